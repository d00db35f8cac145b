"""Draw a display node's layers with matplotlib, in z order.

Layer conventions (set by the display-producer operators in ``meta["kind"]``):

=============  ==================================================================
``plot``       data[0] = x, data[1] = y; a line
``scatter``    rows (y, x); points over an image in 2D, y against x in 1D
``histograms`` data[0] = bin centres, data[1] = counts; bars
``picture``    a 2D image; ``normalize`` is ``linear`` or ``log``
``vector``     rows (y, x, dy, dx); arrows
=============  ==================================================================

Common meta: ``z``, ``color``, ``label``, ``marker``, ``size``. Display-node params
``title``, ``xLabel`` and ``yLabel`` label the axes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure  # pyplot-free: safe in threads and headless

from oremda_lab.spec.pipeline import Node
from oremda_lab.worker.sdk import PortValue


def render(display: Node, layers: list[PortValue], figure: Figure | None = None) -> Figure:
    """Draw ``layers`` on ``figure`` (cleared first; a new one when None)."""
    figure = figure or Figure(figsize=(5, 4), layout="constrained")
    figure.clear()
    ax = figure.add_subplot()
    for layer in sorted(layers, key=lambda v: v.meta.get("z", 0)):
        _DRAW.get(layer.meta.get("kind", "plot"), _draw_plot)(ax, np.asarray(layer.data), layer.meta)
    params = display.params
    if params.get("title"):
        ax.set_title(params["title"])
    if params.get("xLabel"):
        ax.set_xlabel(params["xLabel"])
    if params.get("yLabel"):
        ax.set_ylabel(params["yLabel"])
    if any(layer.meta.get("label") for layer in layers) and display.display == "1D":
        ax.legend(loc="best", fontsize="small")
    return figure


def to_png(display: Node, layers: list[PortValue], path: str | Path) -> Path:
    """Render and write one PNG."""
    path = Path(path)
    render(display, layers).savefig(path, dpi=100)
    return path


def picture_rgba(data: np.ndarray, normalize: str = "linear") -> np.ndarray:
    """A 2D image as 8-bit grey levels (the widget's fast path to a canvas)."""
    image = np.asarray(data, dtype=np.float32)
    if normalize == "log":
        image = np.log1p(image - np.nanmin(image))
    lo, hi = np.nanpercentile(image, [0.5, 99.5]) if image.size else (0.0, 1.0)
    scaled = np.clip((image - lo) / ((hi - lo) or 1.0), 0, 1)
    return (scaled * 255).astype(np.uint8)


def _style(meta: dict[str, Any]) -> dict[str, Any]:
    style = {}
    if meta.get("color"):
        style["color"] = meta["color"]
    if meta.get("label"):
        style["label"] = meta["label"]
    return style


def _draw_plot(ax, data: np.ndarray, meta: dict[str, Any]) -> None:
    if data.ndim == 1:
        ax.plot(data, **_style(meta))
    else:
        ax.plot(data[0], data[1], **_style(meta))


def _draw_scatter(ax, data: np.ndarray, meta: dict[str, Any]) -> None:
    points = data.reshape(-1, 2)
    ax.scatter(points[:, 1], points[:, 0], s=meta.get("size", 10), marker=meta.get("marker", "o"), **_style(meta))


def _draw_histograms(ax, data: np.ndarray, meta: dict[str, Any]) -> None:
    centres, counts = data[0], data[1]
    width = float(np.diff(centres).mean()) if len(centres) > 1 else 1.0
    ax.bar(centres, counts, width=width, **_style(meta))


def _draw_picture(ax, data: np.ndarray, meta: dict[str, Any]) -> None:
    image = np.asarray(data, dtype=np.float64)
    if meta.get("normalize") == "log":
        positive = image[image > 0]
        norm = LogNorm(vmin=positive.min() if positive.size else 1e-12, vmax=max(image.max(), 1e-12))
        image = np.where(image > 0, image, norm.vmin)
    else:
        norm = Normalize()
    ax.imshow(image, cmap=meta.get("cmap", "gray"), norm=norm, interpolation="nearest")
    ax.set_axis_off()


def _draw_vector(ax, data: np.ndarray, meta: dict[str, Any]) -> None:
    rows = data.reshape(-1, 4)
    ax.quiver(rows[:, 1], rows[:, 0], rows[:, 3], rows[:, 2], angles="xy", scale_units="xy", scale=1,
              color=meta.get("color") or "red", label=meta.get("label") or None)  # fmt: skip


_DRAW = {
    "plot": _draw_plot,
    "scatter": _draw_scatter,
    "histograms": _draw_histograms,
    "picture": _draw_picture,
    "vector": _draw_vector,
}
