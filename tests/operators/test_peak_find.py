"""peak_find against known peak positions and a brute-force local-maximum search."""

import numpy as np
import pytest
from scipy import ndimage
from skimage.feature import peak_local_max

from oremda_lab.testing import run_operator


@pytest.fixture(scope="module")
def blurred(mos2_image):
    return ndimage.gaussian_filter(mos2_image, 2)


def brute_force_peaks(image, min_distance, threshold):
    """Pixels above ``threshold`` that are the largest within +-min_distance (window clipped at
    the border), at least min_distance from the border, as a set of (y, x).

    Without ties no two such pixels lie within min_distance of each other, so this is the
    whole definition (skimage's spacing step has nothing to remove).
    """
    h, w = image.shape
    d = min_distance
    found = set()
    for y in range(d, h - d):
        for x in range(d, w - d):
            v = image[y, x]
            if v > threshold and v == image[max(y - d, 0) : y + d + 1, max(x - d, 0) : x + d + 1].max():
                found.add((y, x))
    return found


def test_gaussian_peaks_at_known_positions():
    # Round Gaussians (sigma 2 px, 16 px apart) at sub-pixel positions: the brightest pixel
    # of each is its nearest pixel, whatever the neighbours add (< 1e-13 at 16 px).
    rng = np.random.default_rng(4)
    truth = np.mgrid[1:6, 1:6].reshape(2, -1).T * 16.0 + rng.uniform(-0.45, 0.45, (25, 2))
    amplitude = np.linspace(1.0, 0.2, 25)
    yy, xx = np.mgrid[:96, :96].astype(float)
    image = sum(a * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 8) for a, (y, x) in zip(amplitude, truth, strict=True))
    out = run_operator("peak_find", {"image": image}, {"threshold": 0.5, "min_distance": 5})["peaks"]
    pixel = np.round(truth).astype(int)
    height = amplitude * np.exp(-np.sum((pixel - truth) ** 2, axis=1) / 8)  # the sampled maxima
    keep = height > 0.5 * height.max()  # threshold_rel 0.5 of the image maximum
    order = np.argsort(-height[keep])
    np.testing.assert_array_equal(out.data, pixel[keep][order])  # strongest first
    assert out.meta["convention"] == "rows (y, x) in pixels" and out.meta["count"] == keep.sum() > 10


def test_border_exclusion_and_range_threshold():
    image = np.zeros((40, 40)) + 100.0  # on an offset, like a HAADF image
    for (y, x), a in (((2, 20), 5.0), ((20, 20), 4.0), ((20, 34), 3.0), ((30, 10), 0.4)):
        image[y, x] += a
    image = ndimage.gaussian_filter(image, 1.0)
    peaks = run_operator("peak_find", {"image": image}, {"threshold": 0.1, "relative_to": "range"})["peaks"]
    # (2, 20) is within min_distance 5 of the border; (30, 10) is below 0.1 of the range (0.5).
    assert [tuple(p) for p in peaks.data] == [(20, 20), (20, 34)]
    params = {"threshold": 0.1, "relative_to": "range", "exclude_border": False}
    peaks = run_operator("peak_find", {"image": image}, params)["peaks"]
    assert [tuple(p) for p in peaks.data] == [(2, 20), (20, 20), (20, 34)]
    # Relative to the maximum (~100), 0.1 is below the offset: the weak peak stays.
    peaks = run_operator("peak_find", {"image": image}, {"threshold": 0.1})["peaks"]
    assert [tuple(p) for p in peaks.data] == [(20, 20), (20, 34), (30, 10)]


def test_equals_a_brute_force_search_on_real_mos2(blurred):
    image = blurred[:384, :384]
    out = run_operator("peak_find", {"image": image}, {"threshold": 0.5, "min_distance": 5})["peaks"].data
    expected = brute_force_peaks(image, 5, max(image.min(), 0.5 * image.max()))
    assert {tuple(p) for p in out} == expected and len(out) == len(expected) > 200
    values = image[out[:, 0], out[:, 1]]
    assert np.all(np.diff(values) <= 0)  # strongest first


def test_equals_peak_local_max_on_real_mos2(blurred):
    """Wiring only (the operator calls peak_local_max): parameters reach skimage as documented."""
    out = run_operator("peak_find", {"image": blurred}, {"threshold": 0.5, "min_distance": 5})["peaks"]
    expected = peak_local_max(blurred, min_distance=5, threshold_rel=0.5)
    np.testing.assert_array_equal(out.data, expected)
    assert out.data.shape[1] == 2 and len(out.data) > 2000


def test_threshold_relative_to_range_drops_background_maxima(blurred):
    image = blurred[:384, :384]
    lo, hi = image.min(), image.max()
    out = run_operator("peak_find", {"image": image}, {"threshold": 0.3, "relative_to": "range"})["peaks"].data
    assert {tuple(p) for p in out} == brute_force_peaks(image, 5, lo + 0.3 * (hi - lo))


def test_no_peaks_gives_an_empty_n_by_2():
    out = run_operator("peak_find", {"image": np.zeros((20, 20))})["peaks"]
    assert out.data.shape == (0, 2)
