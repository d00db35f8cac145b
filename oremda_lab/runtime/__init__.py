"""Runtimes: where operator workers run. Chosen by name in one place (:func:`make_runtime`)."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

from oremda_lab.dataplane.arena import Arena
from oremda_lab.runtime.base import NodeFailure, Runtime, Task, TaskResult, WorkerHandle

RUNTIME_ENV = "OREMDA_RUNTIME"
DEFAULT_RUNTIME = "local"

# name -> "module:class", imported on first use so missing extras cost nothing.
NAMED_RUNTIMES = {
    "local": "oremda_lab.runtime.local:LocalRuntime",
    "mpi": "oremda_lab.runtime.mpi:MPIRuntime",
    "inline": "oremda_lab.runtime.inline:InlineRuntime",
    "docker": "oremda_lab.runtime.docker:DockerRuntime",
    "podman": "oremda_lab.runtime.docker:PodmanRuntime",
    "apptainer": "oremda_lab.runtime.apptainer:ApptainerRuntime",
}


class RuntimeUnavailable(RuntimeError):
    """The requested runtime cannot run on this machine (the message says why)."""


CONFIG_FILE = "oremda_lab.json"


def runtime_name(requested: str | None = None) -> str:
    """Pick the runtime: the argument, else ``OREMDA_RUNTIME``, else Jupyter config, else ``local``.

    The Jupyter config is ``{"runtime": NAME}`` in ``oremda_lab.json`` in any Jupyter
    config folder (``jupyter --paths``), e.g. set once by a facility for its JupyterHub.
    """
    return requested or os.environ.get(RUNTIME_ENV) or _configured_runtime() or DEFAULT_RUNTIME


def _configured_runtime() -> str | None:
    try:
        from jupyter_core.paths import jupyter_config_path
    except ImportError:
        return None
    for folder in jupyter_config_path():  # the user's folder comes first
        path = Path(folder) / CONFIG_FILE
        if path.is_file():
            try:
                return json.loads(path.read_text()).get("runtime")
            except (OSError, ValueError) as e:
                raise RuntimeUnavailable(f"cannot read {path}: {e}") from None
    return None


def make_runtime(name: str | None, arena: Arena, **options: Any) -> Runtime:
    """Create the runtime called ``name`` over ``arena``."""
    name = runtime_name(name)
    if name not in NAMED_RUNTIMES:
        raise RuntimeUnavailable(f"unknown runtime {name!r}; choose one of {', '.join(NAMED_RUNTIMES)}")
    module, _, cls = NAMED_RUNTIMES[name].partition(":")
    runtime_class = getattr(importlib.import_module(module), cls)
    return runtime_class(arena, **options)


__all__ = [
    "NAMED_RUNTIMES",
    "NodeFailure",
    "Runtime",
    "RuntimeUnavailable",
    "Task",
    "TaskResult",
    "WorkerHandle",
    "make_runtime",
    "runtime_name",
]
