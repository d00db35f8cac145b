"""NodeEvent: what the engine tells subscribers (widget, progress display, CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# "preparing": its worker's environment or image is being made or fetched (``message`` says what).
NODE_STATES = ("queued", "preparing", "running", "done", "cached", "error", "skipped")
RUN_STATES = ("starting", "started", "finished", "superseded")


@dataclass(frozen=True)
class NodeEvent:
    """A change of state of one node (``node`` set) or of a whole run (``node`` None).

    ``error`` is a dict with message, traceback, log_tail and exit_status.
    For run-level events and ``preparing``, ``message`` says what happens (e.g. workers
    starting, an environment being created).
    """

    run_id: int
    node: str | None
    state: str
    duration_s: float | None = None
    cached: bool = False
    error: dict[str, Any] | None = None
    message: str = ""
