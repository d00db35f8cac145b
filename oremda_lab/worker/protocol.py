"""Control messages between a runtime and a worker (small JSON, never array bytes).

runtime -> worker: ``RUN`` {task, params, inputs: {port: wire value}}, ``PING``, ``SHUTDOWN``
worker -> runtime: ``HELLO`` {worker, operator, pid, environment: {python, executable,
packages}} once connected, then one ``RESULT``
{task, outputs, duration_s} or ``ERROR`` {task, error, traceback} per ``RUN``, ``PONG``.
While a task runs, the worker may send ``PROGRESS`` {task, fraction, message} any number
of times before its RESULT or ERROR (C2: ``sdk.report_progress``).

A wire value is ``{"ref": ObjectRef dict or None, "meta": {...}}``; a lazy value (C4,
:mod:`oremda_lab.dataplane.lazy`) has ``ref`` None and ``lazy``: the file reference.
"""

from __future__ import annotations

import json
from typing import Any

HELLO = "hello"
RUN = "run"
RESULT = "result"
ERROR = "error"
PING = "ping"
PONG = "pong"
PROGRESS = "progress"
SHUTDOWN = "shutdown"

AUTHKEY_ENV = "OREMDA_AUTHKEY"


def encode(op: str, **fields: Any) -> bytes:
    """One message as bytes."""
    return json.dumps({"op": op, **fields}, default=_jsonable).encode()


def decode(raw: bytes) -> dict[str, Any]:
    """Inverse of :func:`encode`."""
    return json.loads(raw)


def _jsonable(value: Any) -> Any:
    # numpy scalars and arrays in meta become plain JSON numbers and lists
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
