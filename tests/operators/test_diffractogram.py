import numpy as np
import pytest

from oremda_lab.testing import run_operator


def test_log_shifted_power_spectrum():
    image = np.random.default_rng(0).random((32, 32))
    out = run_operator("diffractogram", {"image": image})["diffractogram"]
    np.testing.assert_allclose(out.data, np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(image))) ** 2))


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
