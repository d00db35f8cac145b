"""ncem_reader on real files: rosettasciio (the backend), ncempy and h5py (independent readers), known files."""

import numpy as np
import pytest

from oremda_lab.testing import run_operator


def _same_as_rsciio(path, reader):
    expected = reader(str(path))[0]
    out = run_operator("ncem_reader", params={"filename": path.name}, data_dir=path.parent)["image"]
    np.testing.assert_array_equal(out.data, expected["data"])
    assert out.data.dtype == expected["data"].dtype
    axes = sorted(expected["axes"], key=lambda a: a["index_in_array"])
    assert out.meta["pixel_size"] == pytest.approx([float(a["scale"]) for a in axes], rel=1e-12)
    assert out.meta["pixel_unit"] == [a["units"] for a in axes]
    assert out.meta["offset"] == pytest.approx([float(a["offset"]) for a in axes])
    return out


def test_dm3_mos2_equals_rosettasciio_and_ncempy(mos2_dm3):
    from ncempy.io import dm
    from rsciio.digitalmicrograph import file_reader

    out = _same_as_rsciio(mos2_dm3, file_reader)
    assert out.data.shape == (1024, 1024) and out.data.dtype == np.uint32
    assert out.meta["pixel_size"] == pytest.approx([0.0126953125] * 2)
    assert out.meta["pixel_unit"] == ["nm", "nm"]
    with dm.fileDM(str(mos2_dm3)) as f:
        independent = f.getDataset(0)
    np.testing.assert_array_equal(out.data, independent["data"])
    assert out.meta["pixel_size"] == pytest.approx(list(independent["pixelSize"]), rel=1e-6)


def test_velox_emd_equals_rosettasciio(au_emd):
    from rsciio.emd import file_reader

    out = _same_as_rsciio(au_emd, file_reader)
    assert out.data.shape == (2048, 2048)
    assert out.meta["title"] == "HAADF"


def test_velox_emd_equals_its_hdf5_content(au_emd):
    """Independent of both backends: the Velox file's HDF5 datasets and JSON metadata read with h5py."""
    import json

    import h5py

    with h5py.File(au_emd, "r") as f:
        (group,) = f["Data/Image"].values()
        stored = group["Data"][:, :, 0]  # Velox stores (y, x, frame)
        metadata = json.loads(group["Metadata"][:, 0].tobytes().rstrip(b"\0"))
    size = metadata["BinaryResult"]["PixelSize"]
    assert metadata["BinaryResult"]["PixelUnitX"] == "m"
    for backend in ("rosettasciio", "ncempy"):
        out = run_operator("ncem_reader", params={"filename": au_emd.name, "backend": backend}, data_dir=au_emd.parent)
        np.testing.assert_array_equal(out["image"].data, stored)
        nm = [float(size["height"]) * 1e9, float(size["width"]) * 1e9]
        assert out["image"].meta["pixel_size"] == pytest.approx(nm, rel=1e-9)
        assert out["image"].meta["pixel_unit"] == ["nm", "nm"]


def test_berkeley_emd_written_by_ncempy(tmp_path):
    from ncempy.io import emd
    from rsciio.emd import file_reader

    data = np.arange(30 * 40, dtype=np.float32).reshape(30, 40)
    with emd.fileEMD(str(tmp_path / "small.emd"), readonly=False) as f:
        f.put_emdgroup("test", data, emd.defaultDims(data, pixel_size=(0.25, 0.25), pixel_unit=("nm", "nm")))
    # rosettasciio transposes Berkeley EMD images; ncempy (the format's authors) does not.
    out = _same_as_rsciio(tmp_path / "small.emd", file_reader)
    np.testing.assert_array_equal(out.data, data.T)
    params = {"filename": "small.emd", "backend": "ncempy"}
    out = run_operator("ncem_reader", params=params, data_dir=tmp_path)["image"]
    np.testing.assert_array_equal(out.data, data)
    assert out.meta["pixel_size"] == pytest.approx([0.25, 0.25])
    assert out.meta["pixel_unit"] == ["nm", "nm"]


def test_ncempy_backend_equals_ncempy(mos2_dm3):
    """Wiring for the backend switch (the same ncempy call); the truths are the tests above."""
    import ncempy.io

    expected = ncempy.io.read(str(mos2_dm3))
    params = {"filename": mos2_dm3.name, "backend": "ncempy"}
    out = run_operator("ncem_reader", params=params, data_dir=mos2_dm3.parent)["image"]
    np.testing.assert_array_equal(out.data, expected["data"])
    assert out.meta["pixel_size"] == pytest.approx([float(s) for s in expected["pixelSize"]])


def test_unknown_extension_is_refused(tmp_path):
    (tmp_path / "a.xyz").write_bytes(b"")
    with pytest.raises(RuntimeError, match="no reader"):
        run_operator("ncem_reader", params={"filename": "a.xyz"}, data_dir=tmp_path)
