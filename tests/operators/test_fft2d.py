import numpy as np

from oremda_lab.testing import run_operator


def test_equals_numpy_and_inverts():
    image = np.random.default_rng(0).random((32, 48))
    out = run_operator("fft2d", {"in": image})
    expected = np.fft.fft2(image)
    np.testing.assert_allclose(out["real"].data, expected.real, atol=1e-10)
    np.testing.assert_allclose(out["imag"].data, expected.imag, atol=1e-10)
    back = np.fft.ifft2(out["real"].data + 1j * out["imag"].data).real
    np.testing.assert_allclose(back, image, atol=1e-12)


def test_shift_centres_zero_frequency():
    image = np.ones((16, 16))
    out = run_operator("fft2d", {"in": image}, {"shift": True})
    assert np.unravel_index(np.argmax(out["real"].data), (16, 16)) == (8, 8)


def test_a_plane_wave_has_two_peaks_of_half_its_size():
    # Independent truth: cos(2 pi (u y / N + v x / M)) transforms to N M / 2 at (u, v) and (-u, -v).
    n, m, u, v = 32, 48, 3, 5
    y, x = np.mgrid[:n, :m]
    out = run_operator("fft2d", {"in": np.cos(2 * np.pi * (u * y / n + v * x / m))})
    expected = np.zeros((n, m))
    expected[u, v] = expected[-u, -v] = n * m / 2
    np.testing.assert_allclose(out["real"].data, expected, atol=1e-9)
    np.testing.assert_allclose(out["imag"].data, 0, atol=1e-9)
