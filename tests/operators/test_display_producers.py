"""plot, scatter, histograms, picture, vector and print: layers the display renderer draws."""

import numpy as np
import pytest

from oremda_lab.testing import run_operator


def test_plot_stacks_x_and_y():
    x, y = np.linspace(0, 1, 5), np.arange(5.0)
    out = run_operator("plot", {"x": x, "y": y}, {"label": "Spectrum", "color": "red", "z": 2})["out"]
    np.testing.assert_array_equal(out.data, [x, y])
    assert out.meta["kind"] == "plot" and out.meta["label"] == "Spectrum" and out.meta["z"] == 2


def test_plot_length_mismatch():
    with pytest.raises(RuntimeError, match="differ in length"):
        run_operator("plot", {"x": np.zeros(3), "y": np.zeros(4)})


def test_scatter_keeps_y_x_rows():
    peaks = np.array([[1, 2], [3, 4]])
    out = run_operator("scatter", {"in": peaks}, {"marker": "+", "size": 20, "color": "cyan"})["out"]
    np.testing.assert_array_equal(out.data, peaks)
    assert out.meta["kind"] == "scatter" and out.meta["marker"] == "+" and out.meta["size"] == 20


def test_histograms_equal_numpy():
    """Wiring (the operator calls numpy.histogram); the truth is test_histograms_of_known_values."""
    values = np.random.default_rng(0).normal(size=1000)
    values[:3] = np.nan
    out = run_operator("histograms", {"in": values}, {"bins": 20})["out"]
    counts, edges = np.histogram(values[3:], bins=20)
    np.testing.assert_allclose(out.data[0], (edges[:-1] + edges[1:]) / 2)
    np.testing.assert_array_equal(out.data[1], counts)
    assert out.meta["edges"] == pytest.approx(edges.tolist()) and out.meta["n"] == 997


def test_histograms_of_known_values():
    # 0..9 in 5 bins over [0, 9]: edges 0, 1.8, 3.6, 5.4, 7.2, 9 hold two values each (the last
    # bin is closed, so 9 counts); NaN and inf are not values.
    values = np.concatenate([np.arange(10.0), [np.nan, np.inf, -np.inf]])
    out = run_operator("histograms", {"in": values}, {"bins": 5})["out"]
    assert out.meta["edges"] == pytest.approx([0, 1.8, 3.6, 5.4, 7.2, 9])
    np.testing.assert_allclose(out.data, [[0.9, 2.7, 4.5, 6.3, 8.1], [2, 2, 2, 2, 2]])
    assert out.meta["n"] == 10


def test_histograms_of_displacement_magnitudes():
    rows = np.array([[3.0, 4.0], [0.0, 1.0]])
    out = run_operator("histograms", {"in": rows}, {"bins": 2, "magnitude": True})["out"]
    assert out.meta["edges"] == pytest.approx([1, 3, 5])  # |(3, 4)| = 5, |(0, 1)| = 1
    np.testing.assert_array_equal(out.data[1], [1, 1])


def test_picture_passes_the_image_and_its_range():
    image = np.arange(12.0).reshape(3, 4)
    out = run_operator("picture", {"in": image}, {"normalize": "log"})["out"]
    np.testing.assert_array_equal(out.data, image)
    assert out.meta["kind"] == "picture" and out.meta["normalize"] == "log"
    assert (out.meta["min"], out.meta["max"]) == (0.0, 11.0)
    image[0, 0], image[1, 1], image[2, 2] = np.nan, np.inf, -np.inf  # the range of the finite values
    out = run_operator("picture", {"in": image})["out"]
    assert (out.meta["min"], out.meta["max"]) == (1.0, 11.0)


def test_vector_rows_broadcast():
    out = run_operator("vector", {"origin": np.array([10.0, 20.0]), "direction": np.array([[1.0, 2.0], [3.0, 4.0]])},
                       {"scale": 2})["out"]  # fmt: skip
    np.testing.assert_array_equal(out.data, [[10, 20, 2, 4], [10, 20, 6, 8]])
    assert out.meta["kind"] == "vector"


def test_print_passes_through_and_prints(capsys):
    data = np.arange(6.0).reshape(2, 3)
    out = run_operator("print", {"data": data}, {"label": "peaks"})["data"]
    np.testing.assert_array_equal(out.data, data)
    assert "[peaks] array shape=(2, 3)" in capsys.readouterr().out


def test_layers_render(tmp_path):
    """The layers are what oremda_lab.displays draws (one figure, all kinds)."""
    from oremda_lab.displays.render import to_png
    from oremda_lab.spec.pipeline import Node

    image = np.random.default_rng(0).random((32, 32))
    layers = [
        run_operator("picture", {"in": image})["out"],
        run_operator("scatter", {"in": np.array([[5.0, 6.0]])}, {"z": 1})["out"],
        run_operator("vector", {"origin": np.array([5.0, 6.0]), "direction": np.array([3.0, 4.0])}, {"z": 2})["out"],
    ]
    node = Node.from_json({"id": "view", "type": "display", "display": "2D", "params": {}})
    assert to_png(node, layers, tmp_path / "2d.png").stat().st_size > 1000
    line = [run_operator("plot", {"x": np.arange(5.0), "y": np.arange(5.0)}, {"label": "a"})["out"],
            run_operator("histograms", {"in": image})["out"]]  # fmt: skip
    node = Node.from_json({"id": "view", "type": "display", "display": "1D", "params": {}})
    assert to_png(node, line, tmp_path / "1d.png").stat().st_size > 1000
