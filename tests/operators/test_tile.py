import numpy as np

from oremda_lab.testing import run_operator
from oremda_lab.worker.sdk import PortValue


def test_repeats_the_cell_periodically():
    # Truth without numpy.tile: out[y, x] = cell[y mod 3, x mod 4] on a 2 x 3 grid of cells.
    cell = np.arange(12.0).reshape(3, 4)
    out = run_operator("tile", {"image": cell}, {"n_x": 3, "n_y": 2})["image"]
    assert out.data.shape == (6, 12)
    for y in range(6):
        for x in range(12):
            assert out.data[y, x] == cell[y % 3, x % 4]


def test_leading_axes_are_not_repeated_and_axes_are_dropped():
    cells = np.arange(2 * 2 * 3).reshape(2, 2, 3)
    image = PortValue(cells, {"axes": [{}, {}, {}], "title": "cell"})
    out = run_operator("tile", {"image": image}, {"n_x": 2, "n_y": 3})["image"]
    assert out.data.shape == (2, 6, 6)
    k, y, x = np.mgrid[:2, :6, :6]
    np.testing.assert_array_equal(out.data, cells[k, y % 2, x % 3])
    assert out.meta == {"title": "cell"}  # the axes no longer describe the tiled image
