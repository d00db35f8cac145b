import numpy as np
import pytest

from oremda_lab.testing import run_operator
from oremda_lab.worker.sdk import PortValue


def _coordinates(*shape):
    """An image whose pixel [..., y, x] holds 1000 y + x, so every value names its own position."""
    y, x = np.mgrid[: shape[-2], : shape[-1]]
    return np.broadcast_to(1000 * y + x, shape).copy()


def test_bounds_are_x0_x1_y0_y1():
    # Truth without slicing: out[r, c] must be the pixel at (y0 + r, x0 + c), a 10 x 20 block.
    out = run_operator("crop2d", {"image": _coordinates(20, 30)}, {"bounds": [5, 25, 2, 12]})["image"]
    r, c = np.mgrid[:10, :20]
    np.testing.assert_array_equal(out.data, 1000 * (2 + r) + (5 + c))
    assert out.meta["crop"] == {"x0": 5, "x1": 25, "y0": 2, "y1": 12}


def test_null_and_negative_bounds_follow_numpy_slicing():
    # [None, -5, 3, None] on 20 x 30: rows 3..19, columns 0..24.
    out = run_operator("crop2d", {"image": _coordinates(20, 30)}, {"bounds": [None, -5, 3, None]})["image"]
    r, c = np.mgrid[:17, :25]
    np.testing.assert_array_equal(out.data, 1000 * (3 + r) + c)
    assert out.meta["crop"] == {"x0": 0, "x1": 25, "y0": 3, "y1": 20}


def test_leading_axes_are_kept():
    stack = _coordinates(3, 20, 30) + 100_000 * np.arange(3)[:, None, None]
    out = run_operator("crop2d", {"image": stack}, {"bounds": [10, 12, 4, 7]})["image"]
    k, r, c = np.mgrid[:3, :3, :2]
    np.testing.assert_array_equal(out.data, 100_000 * k + 1000 * (4 + r) + (10 + c))


def test_calibration_follows_the_corner(mos2_dm3):
    image = run_operator("ncem_reader", params={"filename": mos2_dm3.name}, data_dir=mos2_dm3.parent)["image"]
    out = run_operator("crop2d", {"image": image}, {"bounds": [100, 300, 50, 250]})["image"]
    scale = image.meta["pixel_size"]
    assert out.meta["offset"] == pytest.approx([50 * scale[0], 100 * scale[1]])
    assert out.meta["pixel_size"] == scale


def test_empty_crop_is_an_error():
    with pytest.raises(RuntimeError, match="leave nothing"):
        run_operator("crop2d", {"image": PortValue(np.zeros((4, 4)))}, {"bounds": [3, 1, 0, 4]})
