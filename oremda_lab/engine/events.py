"""NodeEvent: what the engine tells subscribers (widget, progress display, CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oremda_lab.worker.sdk import PortValue

# "preparing": its worker's environment or image is being made or fetched (``message`` says what).
# "waiting": the node cannot run yet (an input is not connected, or an upstream node cannot
# run); ``message`` says what it waits for. A node whose own description is invalid is "error".
NODE_STATES = ("queued", "preparing", "waiting", "running", "done", "cached", "error", "skipped")
RUN_STATES = ("starting", "started", "finished", "superseded")


@dataclass(frozen=True)
class NodeEvent:
    """A change of state of one node (``node`` set) or of a whole run (``node`` None).

    ``error`` is a dict with message, traceback, log_tail and exit_status.
    For run-level events, ``preparing`` and ``waiting``, ``message`` says what happens
    (e.g. workers starting, an environment being created, the input a node waits for).
    A ``running`` event may carry ``progress`` in [0, 1] (with ``message``, e.g.
    "12/64 partitions"). A display node's ``done`` event carries ``layers``: the values
    it shows (z-ordered, as :attr:`Run.displays <oremda_lab.engine.Run.displays>`), sent
    as soon as its producers are done, before the rest of the run ends.

    ``partial`` True: a *preview* of a display while a node upstream still runs as
    partitions (``done`` with ``layers``, ``progress`` the share of partitions done,
    ``message`` e.g. "3/8 partitions"). Its layers come from the partitions done so far
    (rows not yet done are zero; sums are of the parts done), are neither cached nor in
    the :class:`~oremda_lab.engine.Run`, and are valid while the event is held. The
    display's final ``done`` (``partial`` False) follows and replaces it; a newer run
    stops the previews, and none follows the display's final event.
    """

    run_id: int
    node: str | None
    state: str
    duration_s: float | None = None
    cached: bool = False
    error: dict[str, Any] | None = None
    message: str = ""
    progress: float | None = None
    layers: tuple[PortValue, ...] | None = None
    partial: bool = False
