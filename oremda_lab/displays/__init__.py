"""Display nodes: render their layers (plot, scatter, histograms, picture, vector)."""

from oremda_lab.displays.render import picture_rgba, render, to_png

__all__ = ["picture_rgba", "render", "to_png"]
