import numpy as np
import pytest
from scipy import ndimage
from skimage.feature import peak_local_max

from oremda_lab.testing import run_operator


@pytest.fixture(scope="module")
def blurred(mos2_image):
    return ndimage.gaussian_filter(mos2_image, 2)


def test_equals_peak_local_max_on_real_mos2(blurred):
    out = run_operator("peak_find", {"image": blurred}, {"threshold": 0.5, "min_distance": 5})["peaks"]
    expected = peak_local_max(blurred, min_distance=5, threshold_rel=0.5)
    np.testing.assert_array_equal(out.data, expected)
    assert out.data.shape[1] == 2 and len(out.data) > 2000
    assert out.meta["convention"] == "rows (y, x) in pixels"
    # rows are (y, x): every peak is a local maximum of image[y, x]
    y, x = out.data.T
    assert np.all(blurred[y, x] >= ndimage.maximum_filter(blurred, 3)[y, x])


def test_threshold_relative_to_range_drops_background_maxima(blurred):
    lo, hi = blurred.min(), blurred.max()
    out = run_operator("peak_find", {"image": blurred}, {"threshold": 0.3, "relative_to": "range"})["peaks"]
    expected = peak_local_max(blurred, min_distance=5, threshold_abs=lo + 0.3 * (hi - lo))
    np.testing.assert_array_equal(out.data, expected)


def test_no_peaks_gives_an_empty_n_by_2():
    out = run_operator("peak_find", {"image": np.zeros((20, 20))})["peaks"]
    assert out.data.shape == (0, 2)
