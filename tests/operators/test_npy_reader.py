"""npy_reader: any array from a .npy file in the data folder."""

import numpy as np
import pytest

from oremda_lab.dataplane.lazy import LazyArray
from oremda_lab.testing import run_operator


@pytest.mark.parametrize("shape", [(3, 4, 5), (3, 4, 5, 6)])
@pytest.mark.parametrize("order", ["C", "F"])
def test_reads_what_numpy_saved(tmp_path, order, shape):
    array = np.asarray(np.random.default_rng(0).random(shape), dtype=np.float32, order=order)
    np.save(tmp_path / "scan.npy", array)
    out = run_operator("npy_reader", params={"filename": "scan.npy"}, data_dir=tmp_path)["data"]
    if len(shape) == 4 and order == "C":  # 4D-STEM: a reference to the file, read where it is processed
        assert isinstance(out.data, LazyArray) and out.data.format == "npy"
        np.testing.assert_array_equal(out.data.read(tmp_path), array)
    else:
        np.testing.assert_array_equal(out.data, array)
    assert out.meta == {"filename": "scan.npy", "shape": list(shape), "dtype": "float32"}


def test_a_truncated_file_is_an_error_naming_it(tmp_path):
    np.save(tmp_path / "scan.npy", np.zeros((2, 2, 4, 4)))
    (tmp_path / "scan.npy").write_bytes((tmp_path / "scan.npy").read_bytes()[:-8])
    with pytest.raises(RuntimeError, match="scan.npy is truncated"):
        run_operator("npy_reader", params={"filename": "scan.npy"}, data_dir=tmp_path)


def test_refuses_pickled_objects(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(RuntimeError, match="allow_pickle"):
        run_operator("npy_reader", params={"filename": "objects.npy"}, data_dir=tmp_path)


def test_refuses_files_outside_the_data_folder(tmp_path):
    (tmp_path / "inner").mkdir()
    np.save(tmp_path / "outside.npy", np.zeros(3))
    with pytest.raises(RuntimeError, match="outside the data folder"):
        run_operator("npy_reader", params={"filename": "../outside.npy"}, data_dir=tmp_path / "inner")
