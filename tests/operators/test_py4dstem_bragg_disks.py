"""py4dstem_bragg_disks on the abTEM-simulated MoS2 scan, against the known lattice.

Truth: the reciprocal lattice of the simulated crystal. abTEM's orthogonal MoS2 cell is
a x a sqrt(3) (detector axis 0 along a), so diffraction spots sit at
(h / a, k / (a sqrt(3))) with h + k even; times the wavelength they are angles, and
divided by the detector's mrad per pixel they are pixel offsets from the zero beam.
"""

import numpy as np
import pytest
from _isolated import run_isolated
from test_4dstem import A_MOS2, DETECTOR, WAVELENGTH, mos2_4dstem

pytestmark = pytest.mark.timeout(1200)
PARAMS = {"probe_radius": 4, "min_relative_intensity": 0.1, "relative_to_peak": 1}


@pytest.fixture(scope="module")
def found(stack_engine):
    data, info = mos2_4dstem()
    if not info["source"].startswith("abtem"):
        pytest.skip("needs the abTEM simulation (pip install abtem)")
    out, env = run_isolated(stack_engine, "py4dstem_bragg_disks", {"data": data}, PARAMS)
    return out, env, np.asarray(info["mrad_per_px"])


def lattice(mrad_per_px, max_offset=30):
    h, k = np.mgrid[-8:9, -8:9].reshape(2, -1)
    g = np.stack([h / A_MOS2, k / (A_MOS2 * np.sqrt(3))], 1)[(h + k) % 2 == 0]
    spots = g * WAVELENGTH * 1e3 / mrad_per_px  # px from the zero beam
    return spots[(np.abs(spots) < max_offset).all(axis=1)] + DETECTOR // 2


def test_disks_sit_on_the_reciprocal_lattice(found):
    out, env, mrad = found
    peaks = out["peaks"].data
    assert out["peaks"].meta["columns"] == ["scan_y", "scan_x", "q_y", "q_x", "intensity"]
    spots = lattice(mrad)
    distance = np.linalg.norm(peaks[:, None, 2:4] - spots[None], axis=2)
    nearest, offset = distance.argmin(axis=1), distance.min(axis=1)
    assert np.median(offset) < 0.15  # px, one pattern's disks (about 4 counts per pixel)
    radius = np.linalg.norm((spots - DETECTOR // 2) * mrad, axis=1) / (WAVELENGTH / (A_MOS2 * np.sqrt(3) / 2) * 1e3)
    for order in (0, 1, np.sqrt(3)):  # zero beam, the six {100}, the six {110}
        for j in np.flatnonzero(np.isclose(radius, order, atol=0.01)):
            mine = (nearest == j) & (offset < 1.5)
            patterns = {tuple(p) for p in peaks[mine, :2]}
            assert len(patterns) == 256, f"spot {spots[j]} found in {len(patterns)} of 256 patterns"
            # Averaged over the scan (observed: < 0.02 px; the disks' own centroids in the
            # mean pattern are < 0.01 px off the lattice).
            np.testing.assert_allclose(peaks[mine, 2:4].mean(axis=0), spots[j], atol=0.05)
    assert env["packages"]["py4dstem"] == "0.14.18" and env["packages"]["numpy"].startswith("1.")


def test_zero_beam_in_every_pattern(found):
    peaks = found[0]["peaks"].data
    strongest = [peaks[(peaks[:, 0] == y) & (peaks[:, 1] == x)] for y in range(16) for x in range(16)]
    centres = np.array([p[np.argmax(p[:, 4]), 2:4] for p in strongest])
    np.testing.assert_allclose(centres, DETECTOR // 2, atol=0.05)


def test_bragg_vector_map_holds_every_disk(found):
    out = found[0]
    bvm = out["bvm"].data
    assert bvm.shape == (DETECTOR, DETECTOR)
    # py4DSTEM's histogram spreads each disk's intensity bilinearly: the total is kept.
    assert bvm.sum() == pytest.approx(out["peaks"].data[:, 4].sum(), rel=1e-9)
