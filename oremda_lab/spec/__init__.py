"""Pure data: pipelines, operator specs and labels. Imports nothing else of ours."""

from pathlib import Path

from oremda_lab.spec.labels import labels_to_spec, spec_to_labels
from oremda_lab.spec.operator import OperatorSpec, ParamSpec, PortSpec
from oremda_lab.spec.pipeline import Edge, Endpoint, Node, Pipeline, PipelineError, Problem

SCHEMA_PATH = Path(__file__).with_name("pipeline.schema.json")
"""The pipeline JSON Schema shipped with the package."""

__all__ = [
    "SCHEMA_PATH",
    "Edge",
    "Endpoint",
    "Node",
    "OperatorSpec",
    "ParamSpec",
    "Pipeline",
    "PipelineError",
    "PortSpec",
    "Problem",
    "labels_to_spec",
    "spec_to_labels",
]
