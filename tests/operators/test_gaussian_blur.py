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


def test_impulse_response_is_the_sampled_gaussian():
    # Independent truth: blurring a unit impulse gives exp(-k^2 / (2 sigma^2)) per axis,
    # normalized to sum 1 (no call to scipy here).
    impulse = np.zeros((61, 81))
    impulse[30, 40] = 1.0
    out = run_operator("gaussian_blur", {"image": impulse}, {"sigma": [1.5, 3.0]})["image"].data
    k_y, k_x = np.arange(-30, 31), np.arange(-40, 41)
    expected = np.outer(np.exp(-(k_y**2) / (2 * 1.5**2)), np.exp(-(k_x**2) / (2 * 3.0**2)))
    expected[np.abs(k_y) > 4 * 1.5 + 0.5, :] = 0  # the filter stops at 4 sigma (scipy's default truncate)
    expected[:, np.abs(k_x) > 4 * 3.0 + 0.5] = 0
    np.testing.assert_allclose(out, expected / expected.sum(), atol=1e-15)


def _kernel(sigma, truncate=4.0):
    """The sampled Gaussian on -r..r, r = int(truncate sigma + 0.5), normalized to sum 1, as {offset: weight}."""
    r = int(truncate * sigma + 0.5)
    k = np.arange(-r, r + 1)
    g = np.exp(-(k**2) / (2 * sigma**2))
    return dict(zip(k.tolist(), g / g.sum(), strict=True))


def test_border_modes_fold_the_impulse_response():
    # An impulse on the border: 'wrap' continues the kernel on the opposite side; 'reflect'
    # (the default, d c b a | a b c d) folds the part beyond the edge back onto itself.
    n, m, sy, sx = 31, 41, 1.5, 2.0
    gy, gx = _kernel(sy), _kernel(sx)
    impulse = np.zeros((n, m))
    impulse[0, 0] = 1.0
    wrapped = run_operator("gaussian_blur", {"image": impulse}, {"sigma": [sy, sx], "mode": "wrap"})["image"].data
    expected = np.zeros((n, m))
    for dy, wy in gy.items():
        for dx, wx in gx.items():
            expected[dy % n, dx % m] += wy * wx
    np.testing.assert_allclose(wrapped, expected, atol=1e-15)
    reflected = run_operator("gaussian_blur", {"image": impulse}, {"sigma": [sy, sx]})["image"].data
    expected = np.zeros((n, m))
    for dy, wy in gy.items():
        for dx, wx in gx.items():
            # Output pixel i sees input pixel i - d; beyond the edge, -1 - j mirrors j.
            iy, ix = (dy if dy >= 0 else -1 - dy), (dx if dx >= 0 else -1 - dx)
            expected[iy, ix] += wy * wx
    np.testing.assert_allclose(reflected, expected, atol=1e-15)


@pytest.mark.parametrize(
    ("sigma", "mode", "truncate"),
    [
        (1.5, "reflect", 4.0),
        (7.0, "reflect", 4.0),
        ([0.0, 3.2], "nearest", 4.0),
        (2.5, "mirror", 2.5),
        (4.0, "constant", 4.0),
        (1.0, "wrap", 4.0),
    ],  # fmt: skip
)
def test_float32_full_mos2_equals_scipy(mos2_image, sigma, mode, truncate):
    # The slider's path: the whole 1024 x 1024 real image in float32, the OpenCV kernel
    # (every mode but 'wrap', which scipy does) against scipy's gaussian_filter in float64.
    import cv2  # noqa: F401  (a dependency: the fast path is what this test checks)

    image = mos2_image.astype(np.float32)
    params = {"sigma": sigma, "mode": mode, "truncate": truncate}
    out = run_operator("gaussian_blur", {"image": image}, params)["image"].data
    assert out.dtype == np.float32
    expected = ndimage.gaussian_filter(image.astype(np.float64), sigma, mode=mode, truncate=truncate)
    np.testing.assert_allclose(out, expected, rtol=2e-6, atol=1e-6 * np.abs(expected).max())


def test_opencv_path_matches_scipy_beyond_the_image_size():
    # A kernel wider than the image: OpenCV's borders must keep folding like scipy's modes.
    image = np.random.default_rng(1).random((24, 30))
    for mode in ("reflect", "mirror", "nearest", "constant"):
        out = run_operator("gaussian_blur", {"image": image}, {"sigma": [9.0, 12.0], "mode": mode})["image"].data
        np.testing.assert_allclose(out, ndimage.gaussian_filter(image, [9.0, 12.0], mode=mode), rtol=1e-12, atol=1e-15)
