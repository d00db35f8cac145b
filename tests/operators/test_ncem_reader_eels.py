import numpy as np
import pytest

from oremda_lab.testing import run_operator


def test_msa_equals_rosettasciio(coreloss_msa):
    from rsciio.msa import file_reader

    expected = file_reader(str(coreloss_msa))[0]
    out = run_operator("ncem_reader_eels", params={"filename": coreloss_msa.name}, data_dir=coreloss_msa.parent)
    axis = expected["axes"][0]
    np.testing.assert_array_equal(out["spec"].data, expected["data"])
    np.testing.assert_allclose(out["eloss"].data, axis["offset"] + axis["scale"] * np.arange(axis["size"]))
    assert out["eloss"].data[0] == pytest.approx(360.0) and out["eloss"].data[1] - out["eloss"].data[
        0
    ] == pytest.approx(0.2)
    assert out["eloss"].meta["units"] == "eV"
    assert len(out["eloss"].data) == len(out["spec"].data) == 2048


def test_spectrum_image_is_summed(tmp_path):
    from rsciio.hspy import file_writer

    data = np.arange(2 * 3 * 50, dtype=np.float64).reshape(2, 3, 50)
    axes = [
        {"name": "y", "size": 2, "scale": 1.0, "offset": 0.0, "units": "nm", "navigate": True, "index_in_array": 0},
        {"name": "x", "size": 3, "scale": 1.0, "offset": 0.0, "units": "nm", "navigate": True, "index_in_array": 1},
        {"name": "E", "size": 50, "scale": 0.5, "offset": 100.0, "units": "eV", "navigate": False, "index_in_array": 2},
    ]
    signal = {"data": data, "axes": axes, "metadata": {"General": {"title": "si"}, "Signal": {"signal_type": "EELS"}},
              "original_metadata": {}, "tmp_parameters": {},
              "attributes": {"_lazy": False}, "package_info": {"package": "", "package_version": ""},
              "learning_results": {}, "models": {}}  # fmt: skip
    file_writer(str(tmp_path / "si.hspy"), signal)
    out = run_operator("ncem_reader_eels", params={"filename": "si.hspy"}, data_dir=tmp_path)
    np.testing.assert_allclose(out["spec"].data, data.sum(axis=(0, 1)))
    np.testing.assert_allclose(out["eloss"].data, 100 + 0.5 * np.arange(50))
    assert out["spec"].meta["summed_over_navigation"]
