"""Helpers for widget tests: the blur-and-display pipeline, a recording comm, waiting."""

from __future__ import annotations

import time
from typing import Any

# The getting-started notebook's graph (tests/browser and tests/hpc build their notebooks from it).
BLUR_DISPLAY = {
    "nodes": [
        {"id": "data", "image": "oremda/data_container"},
        {"id": "read", "image": "oremda/tiff_reader"},
        {"id": "blur", "image": "oremda/gaussian_blur", "params": {"sigma": 1.5}},
        {"id": "pic", "image": "oremda/picture"},
        {"id": "view", "type": "display", "display": "2D"},
    ],
    "edges": [
        {"type": "binary", "from": {"id": "data", "port": "data"}, "to": {"id": "read", "port": "data"}},
        {"type": "data", "from": {"id": "read", "port": "out"}, "to": {"id": "blur", "port": "image"}},
        {"type": "data", "from": {"id": "blur", "port": "image"}, "to": {"id": "pic", "port": "in"}},
        {"type": "display", "from": {"id": "pic", "port": "out"}, "to": {"id": "view", "port": "in"}},
    ],
}


# A test operator that takes its time and reports progress (oremda_lab.testing.write_operator).
STEPS_OPERATOR = {
    "name": "steps",
    "version": "1.0.0",
    "description": "Test operator: counts to `n`, reporting progress at each step.",
    "entrypoint": "run",
    "ports": {"input": {}, "output": {"out": {"type": "data"}}},
    "params": {"n": {"type": "integer", "default": 4, "min": 1}},
}
STEPS_RUN = """
import time

import numpy as np

from oremda_lab.worker.sdk import PortValue, operator, report_progress


@operator
def steps(inputs, params):
    n = params["n"]
    for i in range(n):
        time.sleep(0.25)
        report_progress((i + 1) / n, f"{i + 1}/{n} steps")
    return {"out": PortValue(np.arange(n, dtype=np.float64), {})}
"""


class RecordingComm:
    """Records what the kernel side sends (as ipywidgets' own tests do)."""

    comm_id = "recording-comm"
    kernel = "Truthy"

    def __init__(self) -> None:
        self.messages: list[tuple[dict[str, Any], list]] = []

    def open(self, *args: Any, **kwargs: Any) -> None:
        pass

    def on_msg(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass

    def send(self, data: dict[str, Any] | None = None, metadata: Any = None, buffers: list | None = None) -> None:
        self.messages.append((data or {}, list(buffers or [])))

    def replies(self) -> list[dict[str, Any]]:
        return [d["content"] for d, _ in self.messages if d.get("method") == "custom"]

    def updates(self, name: str) -> list[tuple[dict[str, Any], list]]:
        return [(d["state"][name], b) for d, b in self.messages if d.get("method") == "update" and name in d["state"]]


def front_end_says(widget, content: dict[str, Any]) -> dict[str, Any]:
    """Deliver a custom message as the browser would; return the kernel's reply."""
    comm = widget.comm
    before = len(comm.replies())
    widget._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})
    replies = comm.replies()[before:]
    assert len(replies) == 1, replies
    return replies[0]


def wait_for(predicate, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError("condition not met in time")
        time.sleep(0.01)


_ids = iter(range(1, 1 << 30))


def command(widget, cmd: dict[str, Any]) -> dict[str, Any]:
    """Send one editor command as the front end does; return the reply."""
    return front_end_says(widget, {"type": "command", "id": next(_ids), "command": cmd})
