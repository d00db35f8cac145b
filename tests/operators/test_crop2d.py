import numpy as np
import pytest

from oremda_lab.testing import run_operator
from oremda_lab.worker.sdk import PortValue


def test_bounds_are_x0_x1_y0_y1():
    image = np.arange(20 * 30).reshape(20, 30)
    out = run_operator("crop2d", {"image": image}, {"bounds": [5, 25, 2, 12]})["image"]
    np.testing.assert_array_equal(out.data, image[2:12, 5:25])
    assert out.meta["crop"] == {"x0": 5, "x1": 25, "y0": 2, "y1": 12}


def test_null_and_negative_bounds_follow_numpy_slicing():
    image = np.arange(20 * 30).reshape(20, 30)
    out = run_operator("crop2d", {"image": image}, {"bounds": [None, -5, 3, None]})["image"]
    np.testing.assert_array_equal(out.data, image[3:, :-5])


def test_calibration_follows_the_corner(mos2_dm3):
    image = run_operator("ncem_reader", params={"filename": mos2_dm3.name}, data_dir=mos2_dm3.parent)["image"]
    out = run_operator("crop2d", {"image": image}, {"bounds": [100, 300, 50, 250]})["image"]
    scale = image.meta["pixel_size"]
    assert out.meta["offset"] == pytest.approx([50 * scale[0], 100 * scale[1]])
    assert out.meta["pixel_size"] == scale


def test_empty_crop_is_an_error():
    with pytest.raises(RuntimeError, match="leave nothing"):
        run_operator("crop2d", {"image": PortValue(np.zeros((4, 4)))}, {"bounds": [3, 1, 0, 4]})
