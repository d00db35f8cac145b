import numpy as np
import pytest
from scipy import ndimage

from oremda_lab.testing import run_operator


def test_equals_scipy_on_real_mos2(mos2_image):
    image = mos2_image[:256, :256]
    out = run_operator("gaussian_blur", {"image": image}, {"sigma": 2.5})["image"]
    np.testing.assert_allclose(out.data, ndimage.gaussian_filter(image, 2.5), rtol=1e-12)


def test_per_axis_sigma_and_mode():
    image = np.random.default_rng(0).random((40, 50))
    out = run_operator("gaussian_blur", {"image": image}, {"sigma": [1.0, 4.0], "mode": "wrap"})["image"]
    np.testing.assert_allclose(out.data, ndimage.gaussian_filter(image, [1.0, 4.0], mode="wrap"), rtol=1e-12)


def test_integer_input_becomes_float32_and_keeps_meta(mos2_dm3):
    image = run_operator("ncem_reader", params={"filename": mos2_dm3.name}, data_dir=mos2_dm3.parent)["image"]
    out = run_operator("gaussian_blur", {"image": image}, {"sigma": 1})["image"]
    assert out.data.dtype == np.float32
    assert out.meta["pixel_size"] == image.meta["pixel_size"]


def test_wrong_number_of_sigmas():
    with pytest.raises(RuntimeError, match="sigma has 3 values"):
        run_operator("gaussian_blur", {"image": np.zeros((4, 4))}, {"sigma": [1, 1, 1]})
