import numpy as np
from scipy import ndimage
from scipy.optimize import curve_fit
from skimage.feature import peak_local_max

from oremda_lab.testing import run_operator


def test_recovers_known_subpixel_positions():
    rng = np.random.default_rng(3)
    shape, sigma = (160, 160), 2.0
    grid = np.mgrid[1:10, 1:10].reshape(2, -1).T * 16.0
    truth = grid + rng.uniform(-0.5, 0.5, grid.shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    image = np.full(shape, 0.1)
    for y, x in truth:
        image += np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))
    image += rng.normal(0, 0.01, shape)
    start = np.round(truth).astype(int)
    out = run_operator("peak_opt", {"image": image, "peaks": start}, {"cutout": 6})
    error = np.hypot(*(out["peaks"].data - truth).T)
    assert error.max() < 0.05
    np.testing.assert_allclose(out["sigmas"].data, sigma, atol=0.05)
    assert out["peaks"].meta["failed"] == 0


def _gauss(coords, b, a, y0, x0, sy, sx):
    y, x = coords
    return b + a * np.exp(-((y - y0) ** 2) / (2 * sy**2) - (x - x0) ** 2 / (2 * sx**2))


def test_agrees_with_an_independent_fit_on_real_mos2(mos2_image):
    image = mos2_image[256:512, 256:512]
    peaks = peak_local_max(ndimage.gaussian_filter(image, 2), min_distance=5, threshold_rel=0.5, exclude_border=8)
    out = run_operator("peak_opt", {"image": image, "peaks": peaks}, {"cutout": 6})["peaks"].data
    # Independent reference: Levenberg-Marquardt (curve_fit, numerical Jacobian, no bounds)
    # of the same model on the same 13 x 13 windows.
    c = 6
    agree, compared = 0, 0
    for (py, px), got in zip(peaks, out, strict=True):
        yy, xx = np.mgrid[py - c : py + c + 1, px - c : px + c + 1].astype(float)
        z = image[py - c : py + c + 1, px - c : px + c + 1]
        p0 = [z.min(), z.max() - z.min(), py, px, 2.0, 2.0]
        try:
            ref, _ = curve_fit(_gauss, (yy.ravel(), xx.ravel()), z.ravel(), p0=p0, maxfev=5000)
        except RuntimeError:
            continue
        if np.hypot(ref[2] - py, ref[3] - px) > c:  # the reference wandered off; not comparable
            continue
        compared += 1
        agree += np.hypot(ref[2] - got[0], ref[3] - got[1]) < 0.01
    assert compared > 0.9 * len(peaks) > 150
    assert agree >= 0.95 * compared


def test_border_peaks_use_the_clipped_window_and_tiny_windows_fail():
    yy, xx = np.mgrid[:40, :40].astype(float)
    truth = np.array([[1.3, 20.2], [20.4, 38.6]])
    image = sum(np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.5**2)) for y, x in truth)
    out = run_operator("peak_opt", {"image": image, "peaks": np.round(truth)}, {"cutout": 5})
    np.testing.assert_allclose(out["peaks"].data, truth, atol=0.01)
    tiny = run_operator("peak_opt", {"image": np.ones((2, 2)), "peaks": np.array([[0, 0]])}, {"cutout": 3})
    assert tiny["peaks"].meta["failed"] == 1 and np.isnan(tiny["sigmas"].data).all()
    np.testing.assert_array_equal(tiny["peaks"].data, [[0, 0]])
