import numpy as np
import pytest
import tifffile

from oremda_lab.testing import run_operator


@pytest.fixture
def tiff(tmp_path):
    data = np.random.default_rng(0).integers(0, 60000, (64, 48), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", data)
    return tmp_path, data


def test_reads_a_file_in_the_data_folder_like_tifffile(tiff):
    folder, data = tiff
    out = run_operator("tiff_reader", params={"filename": "a.tif"}, data_dir=folder)["out"]
    np.testing.assert_array_equal(out.data, tifffile.imread(folder / "a.tif"))
    assert out.data.dtype == np.uint16 and out.meta["shape"] == [64, 48]


def test_binary_input_wins_over_filename(tiff):
    folder, data = tiff
    other = np.arange(12, dtype=np.float32).reshape(3, 4)
    tifffile.imwrite(folder / "b.tif", other)
    body = (folder / "b.tif").read_bytes()
    out = run_operator("tiff_reader", {"data": body}, {"filename": "a.tif"}, data_dir=folder)["out"]
    np.testing.assert_array_equal(out.data, other)


def test_needs_a_source_and_stays_in_the_data_folder(tiff):
    folder, _ = tiff
    with pytest.raises(RuntimeError, match="filename"):
        run_operator("tiff_reader", data_dir=folder)
    with pytest.raises(RuntimeError, match="outside the data folder"):
        run_operator("tiff_reader", params={"filename": "../x.tif"}, data_dir=folder)
