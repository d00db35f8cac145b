"""Runtimes: where operator workers run. Chosen by name in one place (:func:`make_runtime`)."""

from __future__ import annotations

import importlib
import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oremda_lab.dataplane.arena import Arena
from oremda_lab.runtime.base import NodeFailure, Runtime, Task, TaskResult, WorkerHandle

RUNTIME_ENV = "OREMDA_RUNTIME"
RANKS_ENV = "OREMDA_MPI_RANKS"
IMAGES_ENV = "OREMDA_MPI_IMAGES"
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


@dataclass(frozen=True)
class RuntimeChoice:
    """A runtime's name and the options a site or user configured for it."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


def default_runtime() -> RuntimeChoice:
    """The runtime ``Engine()`` and the editor use when none is named.

    ``OREMDA_RUNTIME`` (``local``, ``inline``, ``docker``, ``podman``, ``apptainer``,
    ``mpi``), else the Jupyter config, else ``local``. The Jupyter config is
    ``oremda_lab.json`` in any Jupyter config folder (``jupyter --paths``; the user's
    first), e.g. written once by a facility for its JupyterHub::

        {"runtime": "mpi", "options": {"ranks": 4, "launcher": "srun -n {ranks} --mpi=pmi2"}}

    Its ``options`` apply when its runtime is the one chosen. For ``mpi``,
    ``OREMDA_MPI_RANKS`` sets ``ranks`` and ``OREMDA_MPI_LAUNCHER`` the launcher (both
    before the config's), ``OREMDA_MPI_IMAGES`` (``podman`` or ``apptainer``) runs each
    rank's operators in their images; a launcher given as a string is split like a shell would.
    """
    config = _jupyter_config()
    name = os.environ.get(RUNTIME_ENV) or config.get("runtime") or DEFAULT_RUNTIME
    options = dict(config.get("options") or {}) if config.get("runtime") == name else {}
    if name == "mpi":
        from oremda_lab.runtime.mpi import LAUNCHER_ENV

        if os.environ.get(LAUNCHER_ENV):
            options.pop("launcher", None)  # the runtime reads the environment's itself
        elif isinstance(options.get("launcher"), str):
            options["launcher"] = shlex.split(options["launcher"])
        ranks = os.environ.get(RANKS_ENV)
        if ranks:
            if not ranks.isdigit() or int(ranks) < 1:
                raise RuntimeUnavailable(f"{RANKS_ENV}={ranks!r}: give a whole number of MPI ranks, at least 1")
            options["ranks"] = int(ranks)
        images = os.environ.get(IMAGES_ENV)
        if images:
            options["images"] = images  # MPIRuntime names the engines it knows when this is none
    return RuntimeChoice(name, options)


def runtime_name(requested: str | None = None) -> str:
    """The argument, else the name :func:`default_runtime` picks."""
    return requested or default_runtime().name


def _jupyter_config() -> dict[str, Any]:
    try:
        from jupyter_core.paths import jupyter_config_path
    except ImportError:
        return {}
    for folder in jupyter_config_path():  # the user's folder comes first
        path = Path(folder) / CONFIG_FILE
        if path.is_file():
            try:
                config = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                raise RuntimeUnavailable(f"cannot read {path}: {e}") from None
            if not isinstance(config, dict) or not isinstance(config.get("options", {}), dict):
                raise RuntimeUnavailable(f'{path}: expected {{"runtime": NAME, "options": {{...}}}}')
            return config
    return {}


def make_runtime(name: str | None, arena: Arena, **options: Any) -> Runtime:
    """Create the runtime called ``name`` (default: :func:`default_runtime`) over ``arena``.

    The configured options of the default runtime apply to it when named too; ``options``
    given here win, except ``None`` (not given: ``Engine`` passes ``timeout=None``).
    """
    default = default_runtime()
    name = name or default.name
    if name == default.name:
        given = {k: v for k, v in options.items() if v is not None or k not in default.options}
        options = {**default.options, **given}
    if name not in NAMED_RUNTIMES:
        raise RuntimeUnavailable(f"unknown runtime {name!r}; choose one of {', '.join(NAMED_RUNTIMES)}")
    module, _, cls = NAMED_RUNTIMES[name].partition(":")
    runtime_class = getattr(importlib.import_module(module), cls)
    return runtime_class(arena, **options)


__all__ = [
    "NAMED_RUNTIMES",
    "NodeFailure",
    "Runtime",
    "RuntimeChoice",
    "RuntimeUnavailable",
    "Task",
    "TaskResult",
    "WorkerHandle",
    "default_runtime",
    "make_runtime",
    "runtime_name",
]
