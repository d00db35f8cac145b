"""oremda-lab: reproducible electron-microscopy pipelines in Jupyter.

>>> from oremda_lab import Pipeline, Engine
"""

from oremda_lab._version import __version__
from oremda_lab.engine import Engine, NodeEvent, Run
from oremda_lab.registry import Registry, default_registry
from oremda_lab.spec.pipeline import Pipeline, PipelineError, set_default_catalog
from oremda_lab.widget import PipelineEditor
from oremda_lab.worker.sdk import PortValue, operator

set_default_catalog(default_registry)

__all__ = [
    "Engine",
    "NodeEvent",
    "Pipeline",
    "PipelineEditor",
    "PipelineError",
    "PortValue",
    "Registry",
    "Run",
    "__version__",
    "operator",
]
