"""tiff_reader against files of known contents: written by hand (baseline TIFF), by Pillow and by tifffile."""

import struct

import numpy as np
import pytest
import tifffile

from oremda_lab.testing import run_operator


def baseline_tiff(image: np.ndarray) -> bytes:
    """A little-endian, uncompressed, one-strip grayscale TIFF 6.0 of a 2D uint8/uint16/float32 array."""
    height, width = image.shape
    body = np.ascontiguousarray(image, image.dtype.newbyteorder("<")).tobytes()
    sample_format = 3 if image.dtype.kind == "f" else 1
    tags = [  # (tag, type 3 = SHORT / 4 = LONG, value), sorted by tag as the format requires
        (256, 4, width), (257, 4, height), (258, 3, 8 * image.dtype.itemsize), (259, 3, 1), (262, 3, 1),
        (273, 4, 8), (277, 3, 1), (278, 4, height), (279, 4, len(body)), (339, 3, sample_format),
    ]  # fmt: skip
    ifd = struct.pack("<H", len(tags))
    for tag, kind, value in tags:
        # A value that fits sits in the entry itself, left-justified (a SHORT is padded).
        ifd += struct.pack("<HHIHH" if kind == 3 else "<HHII", tag, kind, 1, value, *((0,) if kind == 3 else ()))
    ifd += struct.pack("<I", 0)  # no next IFD
    return b"II" + struct.pack("<HI", 42, 8 + len(body)) + body + ifd


@pytest.fixture
def tiff(tmp_path):
    data = np.random.default_rng(0).integers(0, 60000, (64, 48), dtype=np.uint16)
    (tmp_path / "a.tif").write_bytes(baseline_tiff(data))
    return tmp_path, data


def test_reads_a_hand_written_file_in_the_data_folder(tiff):
    folder, data = tiff
    out = run_operator("tiff_reader", params={"filename": "a.tif"}, data_dir=folder)["out"]
    np.testing.assert_array_equal(out.data, data)
    assert out.data.dtype == np.uint16 and out.meta["shape"] == [64, 48]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_reads_what_pillow_and_a_hand_written_header_hold(tmp_path, dtype):
    from PIL import Image

    data = (np.random.default_rng(1).random((21, 34)) * 200).astype(dtype)
    Image.fromarray(data).save(tmp_path / "pil.tif")
    (tmp_path / "hand.tif").write_bytes(baseline_tiff(data))
    for name in ("pil.tif", "hand.tif"):
        out = run_operator("tiff_reader", params={"filename": name}, data_dir=tmp_path)["out"]
        np.testing.assert_array_equal(out.data, data)
        assert out.data.dtype == dtype


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
