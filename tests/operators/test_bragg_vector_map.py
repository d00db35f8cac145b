"""bragg_vector_map on synthetic patterns of disks at known positions with known intensities.

A disk of the template's radius correlates with the unit-sum template to exactly its
intensity at its centre, and less at every other shift, so the map holds, at each disk
centre, the sum of that disk's intensities over the patterns that keep it, and nothing
else. test_4dstem.py checks the lattice on the simulated MoS2 scan (``mpi`` tier).
"""

import numpy as np

from oremda_lab.testing import run_operator

SHAPE = (48, 48)
CENTRES = {"zero": (24, 24), "a": (24, 36), "b": (12, 24), "c": (33, 15), "weak": (38, 34)}


def _patterns(intensities):
    """(n, 48, 48) patterns; intensities maps a disk name to n values (radius 4 = the template)."""
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]]
    n = len(next(iter(intensities.values())))
    out = np.zeros((n, *SHAPE), np.float32)
    for name, values in intensities.items():
        cy, cx = CENTRES[name]
        disk = ((y - cy) ** 2 + (x - cx) ** 2 <= 16).astype(np.float32)
        out += np.asarray(values, np.float32)[:, None, None] * disk
    return out


def test_map_is_the_summed_intensity_at_each_disk_centre():
    rng = np.random.default_rng(0)
    n = 6
    intensities = {
        "zero": np.full(n, 500.0),
        "a": rng.uniform(4, 6, n),  # the strongest Bragg disk: the threshold's reference
        "b": rng.uniform(2, 3, n),
        "c": rng.uniform(0.8, 1.2, n),
        "weak": np.full(n, 0.2),  # below 0.1 of disk a in every pattern: never kept
    }
    data = _patterns(intensities).reshape(2, 3, *SHAPE)
    out = run_operator("bragg_vector_map", {"data": data}, {"template_radius": 4, "threshold": 0.1})["out"].data
    expected = np.zeros(SHAPE)
    for name in ("zero", "a", "b", "c"):
        expected[CENTRES[name]] = intensities[name].sum()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-3)


def test_threshold_relative_to_the_zero_beam():
    n = 3
    intensities = {"zero": np.full(n, 100.0), "a": np.full(n, 20.0), "b": np.full(n, 5.0)}
    params = {"template_radius": 4, "threshold": 0.1, "relative_to": 0}
    out = run_operator("bragg_vector_map", {"data": _patterns(intensities)}, params)["out"].data
    expected = np.zeros(SHAPE)
    expected[CENTRES["zero"]], expected[CENTRES["a"]] = 300.0, 60.0  # b (5 < 0.1 * 100) is dropped
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-3)
