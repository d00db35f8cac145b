"""Run an operator that needs its own Python environment through the real engine.

Operators that wrap py4DSTEM, HyperSpy or LiberTEM cannot run in the test process
(their stacks conflict with it and with each other); the local runtime starts each in
its cached virtual environment. :func:`run_isolated` feeds arrays to one of them via
``npy_reader`` nodes and copies its outputs out of shared memory; the ``stack_engine``
fixture (conftest.py) gives each test module one such engine, its workers kept warm.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from oremda_lab.engine import Engine
from oremda_lab.spec.pipeline import Pipeline
from oremda_lab.worker.sdk import PortValue

# Creating an environment on a fresh machine downloads its wheels once (minutes).
PREPARE_SECONDS = 900


def run_isolated(
    engine: Engine, name: str, inputs: dict[str, np.ndarray], params: dict[str, Any] | None = None
) -> tuple[dict[str, PortValue], dict[str, Any]]:
    """Run operator ``name`` on ``inputs``; returns its outputs (copies) and its environment record."""
    # The node is named after the operator: one engine's warm worker per node id.
    nodes = [{"id": name, "image": f"oremda/{name}", "params": params or {}}]
    edges = []
    for port, array in inputs.items():
        array = np.ascontiguousarray(array)
        filename = f"{hashlib.sha256(array.tobytes() + str(array.dtype).encode()).hexdigest()[:16]}.npy"
        path = Path(engine.data_dir) / filename
        if not path.exists():
            np.save(path, array)
        nodes.append({"id": f"in_{port}", "image": "oremda/npy_reader", "params": {"filename": filename}})
        edges.append({"type": "data", "from": {"id": f"in_{port}", "port": "data"}, "to": {"id": name, "port": port}})
    run = engine.run(Pipeline.from_json({"nodes": nodes, "edges": edges}), timeout=PREPARE_SECONDS)
    run.raise_for_errors()
    outputs = {
        port: PortValue(np.array(v.data) if isinstance(v.data, np.ndarray) else v.data, dict(v.meta))
        for port, v in run.outputs[name].items()
    }
    return outputs, run.record()["provenance"]["nodes"][name]["environment"]
