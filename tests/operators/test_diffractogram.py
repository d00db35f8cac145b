"""diffractogram against analytic spectra and a direct DFT sum (no call to numpy.fft here)."""

import numpy as np
import pytest

from oremda_lab.testing import run_operator


def _dft(image):
    """F[k, l] = sum_yx image[y, x] exp(-2 pi i (k y / N + l x / M)), as two DFT matrix products."""
    n, m = image.shape
    wy = np.exp(-2j * np.pi * np.outer(np.arange(n), np.arange(n)) / n)
    wx = np.exp(-2j * np.pi * np.outer(np.arange(m), np.arange(m)) / m)
    return wy @ image @ wx


def test_a_plane_wave_gives_two_spots_of_known_power():
    # A cos(2 pi (u y / N + v x / M)) has |F| = A N M / 2 at +-(u, v); centred, those sit at
    # (N/2 + u, M/2 + v) and (N/2 - u, M/2 - v); every other frequency has zero power.
    n, m, u, v, amplitude = 32, 40, 3, -5, 2.5
    y, x = np.mgrid[:n, :m]
    image = amplitude * np.cos(2 * np.pi * (u * y / n + v * x / m))
    out = run_operator("diffractogram", {"image": image})["diffractogram"].data
    expected = np.zeros((n, m))
    expected[n // 2 + u, m // 2 + v] = expected[n // 2 - u, m // 2 - v] = np.log1p((amplitude * n * m / 2) ** 2)
    np.testing.assert_allclose(out, expected, atol=1e-9)


def test_equals_a_direct_dft_sum():
    image = np.random.default_rng(0).random((12, 10))
    out = run_operator("diffractogram", {"image": image})["diffractogram"].data
    power = np.abs(_dft(image)) ** 2
    # Centring by hand: frequency k (0..N-1, k >= N/2 meaning k - N) goes to row (k + N/2) mod N.
    centred = np.roll(power, (12 // 2, 10 // 2), axis=(0, 1))
    np.testing.assert_allclose(out, np.log1p(centred), rtol=1e-10)


def test_hann_window_and_mean_subtraction():
    # The symmetric Hann window w[k] = (1 - cos(2 pi k / (N - 1))) / 2, written out.
    image = np.random.default_rng(1).random((9, 14)) + 5.0
    out = run_operator("diffractogram", {"image": image}, {"window": "hann", "subtract_mean": True})
    hann = [(1 - np.cos(2 * np.pi * np.arange(k) / (k - 1))) / 2 for k in image.shape]
    windowed = (image - image.mean()) * np.outer(*hann)
    expected = np.roll(np.abs(_dft(windowed)) ** 2, (9 // 2, 14 // 2), axis=(0, 1))
    np.testing.assert_allclose(out["diffractogram"].data, np.log1p(expected), rtol=1e-10)
    plain = run_operator("diffractogram", {"image": image}, {"subtract_mean": True})["diffractogram"].data
    assert plain[9 // 2, 14 // 2] == pytest.approx(0, abs=1e-20)  # no mean, no zero-frequency power
    assert out["diffractogram"].meta["window"] == "hann"


def test_reciprocal_calibration():
    from oremda_lab.worker.sdk import PortValue

    image = PortValue(np.zeros((64, 32)), {"pixel_size": [0.5, 0.25], "pixel_unit": ["nm", "nm"]})
    meta = run_operator("diffractogram", {"image": image})["diffractogram"].meta
    assert meta["pixel_size"] == pytest.approx([1 / 32, 1 / 8])  # 1 / (N * pixel size)
    assert meta["pixel_unit"] == ["1/nm", "1/nm"]


def test_mos2_spots_match_the_lattice_period(mos2_dm3):
    reader = run_operator("ncem_reader", params={"filename": mos2_dm3.name}, data_dir=mos2_dm3.parent)["image"]
    crop = run_operator("crop2d", {"image": reader}, {"bounds": [0, 512, 0, 512]})["image"]
    out = run_operator("diffractogram", {"image": crop}, {"window": "hann", "subtract_mean": True})["diffractogram"]
    d = out.data.copy()
    yy, xx = np.mgrid[:512, :512] - 256
    radius = np.hypot(yy, xx)
    d[radius < 8] = 0  # ignore what is left of the central spike
    spot = np.unravel_index(np.argmax(d), d.shape)
    period_px = 512 / radius[spot]
    # MoS2 {100} spacing = a * sqrt(3) / 2, with a ~ 23 px in this image.
    assert 17 < period_px < 22
    assert out.meta["pixel_size"] == pytest.approx([1 / (512 * 0.0126953125)] * 2)
    assert out.meta["pixel_unit"] == ["1/nm", "1/nm"]
