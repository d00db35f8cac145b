"""Test helpers for operator authors and runtime implementers.

- :func:`run_operator` runs one operator on given inputs through the real worker
  code path (shared memory, Arrow tensors, control messages), without a runtime.
- :class:`RuntimeContract` is the test class every runtime passes (see ``tests/runtime``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from oremda_lab.dataplane.arena import Arena
from oremda_lab.dataplane.refs import ObjectRef
from oremda_lab.registry import Registry, default_registry
from oremda_lab.worker import protocol
from oremda_lab.worker.main import Worker, load_operator
from oremda_lab.worker.sdk import DATA_DIR_ENV, PortValue


def run_operator(
    name: str,
    inputs: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    *,
    registry: Registry | None = None,
    data_dir: str | Path | None = None,
) -> dict[str, PortValue]:
    """Run operator ``name`` once; returns its outputs (copied out of shared memory).

    ``inputs`` values may be PortValue, ndarray or bytes. Parameters get their
    defaults. Raises ``RuntimeError`` with the operator's error and traceback.
    """
    spec = (registry or default_registry()).get(name)
    import os

    previous = os.environ.get(DATA_DIR_ENV)
    if data_dir is not None:
        os.environ[DATA_DIR_ENV] = str(data_dir)
    try:
        with Arena.create() as arena:
            _, func = load_operator(spec.path)
            worker = Worker(spec, func, Arena.attach(arena.path))
            wire = {}
            for port, value in (inputs or {}).items():
                value = value if isinstance(value, PortValue) else PortValue(value)
                ref = arena.put(value.data, f"input--{port}") if value.data is not None else None
                wire[port] = {"ref": ref.to_dict() if ref else None, "meta": value.meta}
            msg = protocol.decode(
                protocol.encode(protocol.RUN, task="t", params=spec.resolved_params(params or {}), inputs=wire)
            )
            reply = protocol.decode(worker.handle(msg))
            if reply["op"] == protocol.ERROR:
                raise RuntimeError(f"{name}: {reply['error']}\n{reply['traceback']}")
            out = {}
            for port, v in reply["outputs"].items():
                data = arena.get(ObjectRef.from_dict(v["ref"])) if v["ref"] else None
                out[port] = PortValue(np.array(data) if isinstance(data, np.ndarray) else data, v["meta"])
            return out
    finally:
        if data_dir is not None:
            if previous is None:
                os.environ.pop(DATA_DIR_ENV, None)
            else:
                os.environ[DATA_DIR_ENV] = previous


def write_operator(folder: Path, description: dict[str, Any], code: str) -> Path:
    """Create an operator folder (for tests that need a temporary operator)."""
    folder = Path(folder) / description["name"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "operator.json").write_text(json.dumps(description))
    (folder / "run.py").write_text(code)
    return folder
