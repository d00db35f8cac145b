"""Display nodes in a notebook, each one figure that updates in place after every run.

The first figure of a display shows it; later ones replace it in its output.
:meth:`LiveDisplays.run` shows each display as soon as its producers are done (its
``done`` event), within the run; :meth:`LiveDisplays.update` shows a finished run.

>>> live = LiveDisplays()
>>> run = live.run(engine, pipeline)  # doctest: +SKIP
>>> live.update(engine.run(pipeline))  # doctest: +SKIP
"""

from __future__ import annotations

import io
import threading
from typing import Any

from IPython.display import DisplayHandle, Image

from oremda_lab.displays.render import render
from oremda_lab.spec.pipeline import Node, Pipeline
from oremda_lab.worker.sdk import PortValue


class LiveDisplays:
    """One output per display node, updated in place (IPython display ids).

    Engines, runs and events are typed ``Any``: displays sit below the engine's layer.
    """

    def __init__(self, dpi: int = 90):
        self.dpi = dpi
        self.handles: dict[str, Any] = {}
        self._lock = threading.RLock()
        # Runs of run() in progress: id -> the pipeline submitted, the displays shown from events.
        self._runs: dict[int, tuple[Pipeline, set[str]]] = {}

    def run(self, engine: Any, pipeline: Pipeline, timeout: float | None = None) -> Any:
        """Run ``pipeline`` on ``engine``; each display is shown as soon as its producers are done.

        The displays a run did not show from their events (e.g. one whose upstream
        failed) are shown from the finished run, as :meth:`update` does. Returns the run.
        """
        # Under the lock: the run's first events wait in _on_event until its id is known.
        with self._lock:
            unsubscribe = engine.subscribe(self._on_event)
            try:
                future = engine.submit(pipeline)
            except BaseException:
                unsubscribe()
                raise
            self._runs[future.run_id] = (pipeline, shown := set())
        try:
            run = future.result(timeout)
        finally:
            unsubscribe()
            with self._lock:
                del self._runs[future.run_id]
        self._update(run, shown)
        return run

    def update(self, run: Any) -> None:
        """Show or refresh every display node of ``run`` (an :class:`~oremda_lab.engine.Run`)."""
        self._update(run, set())

    def _update(self, run: Any, shown: set[str]) -> None:
        """Show the displays of ``run`` except those already ``shown`` during it."""
        if run.superseded:
            return  # a newer run is on its way; keep the current figures
        with self._lock:
            for node_id, layers in run.displays.items():
                if node_id not in shown:
                    self._show(run.pipeline.nodes[node_id], layers)

    def _on_event(self, event: Any) -> None:
        if event.state != "done" or event.layers is None:
            return
        with self._lock:
            if event.run_id not in self._runs:
                return  # a run of another caller on this engine
            pipeline, shown = self._runs[event.run_id]
            self._show(pipeline.nodes[event.node], list(event.layers))
            if not getattr(event, "partial", False):  # a preview: the final layers still come
                shown.add(event.node)

    def _show(self, node: Node, layers: list[PortValue]) -> None:
        """Draw one display node and show it, in its output if it has one."""
        buffer = io.BytesIO()
        render(node, layers).savefig(buffer, format="png", dpi=self.dpi)
        image = Image(buffer.getvalue(), format="png")
        if node.id in self.handles:
            self.handles[node.id].update(image)
        else:
            self.handles[node.id] = DisplayHandle()
            self.handles[node.id].display(image)
