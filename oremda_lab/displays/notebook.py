"""Display nodes in a notebook, each one figure that updates in place after every run.

The first ``update`` shows the figures; later ones replace them in their outputs.

>>> live = LiveDisplays()
>>> live.update(engine.run(pipeline))  # doctest: +SKIP
"""

from __future__ import annotations

import io
from typing import Any

from IPython.display import DisplayHandle, Image

from oremda_lab.displays.render import render


class LiveDisplays:
    """One output per display node, updated in place (IPython display ids)."""

    def __init__(self, dpi: int = 90):
        self.dpi = dpi
        self.handles: dict[str, Any] = {}

    def update(self, run: Any) -> None:
        """Show or refresh every display node of ``run`` (an :class:`~oremda_lab.engine.Run`)."""
        if run.superseded:
            return  # a newer run is on its way; keep the current figures
        for node_id, layers in run.displays.items():
            buffer = io.BytesIO()
            render(run.pipeline.nodes[node_id], layers).savefig(buffer, format="png", dpi=self.dpi)
            image = Image(buffer.getvalue(), format="png")
            if node_id in self.handles:
                self.handles[node_id].update(image)
            else:
                self.handles[node_id] = DisplayHandle()
                self.handles[node_id].display(image)
