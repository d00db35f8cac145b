import numpy as np
import pytest

from oremda_lab.displays import picture_rgba, to_png
from oremda_lab.spec.pipeline import Node
from oremda_lab.worker.sdk import PortValue


@pytest.mark.parametrize(
    "display, layers",
    [
        ("1D", [PortValue(np.stack([np.arange(10), np.arange(10) ** 2]), {"kind": "plot", "label": "y"})]),
        ("1D", [PortValue(np.stack([np.arange(5), np.ones(5)]), {"kind": "histograms", "color": "red"})]),
        (
            "2D",
            [
                PortValue(np.random.rand(32, 32), {"kind": "picture", "normalize": "log", "z": 0}),
                PortValue(np.array([[4, 5], [10, 12]]), {"kind": "scatter", "z": 1}),
                PortValue(np.array([[4, 5, 2, 2]]), {"kind": "vector", "z": 2}),
            ],
        ),
    ],
)
def test_displays_write_pngs(tmp_path, display, layers):
    path = to_png(Node("view", type="display", display=display, params={"title": "t"}), layers, tmp_path / "v.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_picture_fast_path_is_8_bit():
    grey = picture_rgba(np.linspace(0, 1, 100).reshape(10, 10))
    assert grey.dtype == np.uint8 and grey.min() == 0 and grey.max() == 255
