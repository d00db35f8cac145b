"""A pipeline run as a batch job or notebook would: ``Engine()`` with the runtime the environment picks.

``python pipeline_job.py PIPELINE.json DATA_DIR OUT.npz`` runs the pipeline once and
saves every node's outputs as ``NODE.PORT`` arrays, plus ``runtime.json`` next to them
(the runtime's name, ranks, launcher and shared-memory session).
"""

import json
import sys
from pathlib import Path

import numpy as np

from oremda_lab.engine import Engine
from oremda_lab.spec.pipeline import Pipeline


def main(pipeline_path: str, data_dir: str, out: str) -> None:
    """Run the pipeline; exit non-zero with the node errors when it fails."""
    with Engine(data_dir=data_dir) as engine:
        pipeline = Pipeline.load(pipeline_path, catalog=engine.registry)
        run = engine.run(pipeline)
        if not run.ok:
            sys.exit(f"pipeline failed: {run.errors}")
        arrays = {
            f"{node}.{port}": np.asarray(v.data) for node, ports in run.outputs.items() for port, v in ports.items()
        }
        np.savez(out, **arrays)
        runtime = engine.runtime
        info = {"runtime": runtime.name, "ranks": getattr(runtime, "ranks", None)}
        info.update(launcher=getattr(runtime, "launcher", None), session=str(engine.arena.path))
        Path(out).with_name("runtime.json").write_text(json.dumps(info))


if __name__ == "__main__":
    main(*sys.argv[1:4])
