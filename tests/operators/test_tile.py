import numpy as np

from oremda_lab.testing import run_operator


def test_equals_numpy_tile():
    cell = np.arange(12.0).reshape(3, 4)
    out = run_operator("tile", {"image": cell}, {"n_x": 3, "n_y": 2})["image"]
    np.testing.assert_array_equal(out.data, np.tile(cell, (2, 3)))
    assert out.data.shape == (6, 12)
