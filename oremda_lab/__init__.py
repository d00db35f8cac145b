"""oremda-lab: reproducible electron-microscopy pipelines in Jupyter.

>>> from oremda_lab import Pipeline, Engine

Heavy parts (engine, widget) load on first use, so a worker process that imports
``oremda_lab.worker`` pays only for numpy and pyarrow.
"""

from importlib import import_module
from typing import Any

from oremda_lab._version import __version__
from oremda_lab.registry import Registry, default_registry
from oremda_lab.spec.pipeline import Pipeline, PipelineError, set_default_catalog

set_default_catalog(default_registry)

_LAZY = {
    "Engine": "oremda_lab.engine",
    "NodeEvent": "oremda_lab.engine",
    "Run": "oremda_lab.engine",
    "PipelineEditor": "oremda_lab.widget",
    "PortValue": "oremda_lab.worker.sdk",
    "operator": "oremda_lab.worker.sdk",
}

__all__ = ["Pipeline", "PipelineError", "Registry", "__version__", *_LAZY]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The Jupyter server extension (the kernel websocket without Nagle delays)."""
    return [{"module": "oremda_lab.widget.server"}]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'oremda_lab' has no attribute {name!r}")
