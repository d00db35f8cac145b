"""Label checks (``oremda-lab labels``) and LABEL lines for Dockerfiles, without an engine."""

import json
from pathlib import Path

import pytest

from oremda_lab import cli
from oremda_lab.images.labels import check_labels, dockerfile_labels
from oremda_lab.registry import default_registry
from oremda_lab.spec.labels import spec_to_labels
from oremda_lab.spec.operator import OperatorSpec

TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "third_party"
GOOD = {
    "oremda.name": "blur",
    "oremda.ports.input.image.type": "data",
    "oremda.ports.output.image.type": "data",
    "oremda.params.sigma.type": "number",
    "oremda.params.sigma.default": "2",
    "oremda.params.sigma.min": "0",
    "oremda.params.sigma.max": "20",
}


def test_every_library_operator_has_valid_labels():
    for spec in default_registry().all():
        assert check_labels(spec_to_labels(spec)) == [], spec.name


def test_upstream_style_labels_are_valid():
    # upstream images: string booleans, no ranges, metadata as nested keys
    labels = {
        "oremda.name": "peak_find",
        "oremda.ports.input.image.type": "data",
        "oremda.ports.input.image.required": "true",
        "oremda.params.threshold.type": "number",
        "oremda.params.threshold.required": "false",
        "oremda.metadata.author": "someone",
        "maintainer": "not ours, ignored",
    }
    assert check_labels(labels) == []


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"oremda.name": None}, "image labels carry no 'oremda.name'"),
        ({"oremda.params.sigma.defualt": "2"}, "oremda.params.sigma.defualt: unknown field 'defualt'"),
        ({"oremda.ports.input.image.type": "image"}, "oremda.ports.input.image.type: 'image' is not one of"),
        ({"oremda.params.sigma.type": "float"}, "oremda.params.sigma.type: 'float' is not one of"),
        ({"oremda.ports.input.image.required": "maybe"}, "required: 'maybe' is not a bool"),
        ({"oremda.ports.input.image.ndim": "two"}, "ndim: 'two' is not int"),
        ({"oremda.params.sigma.max": "[1]"}, "max: '[1]' is not float"),
        ({"oremda.params.sigma.default": "25"}, "oremda.params.sigma.default: 25 is above the maximum 20"),
        ({"oremda.params.sigma.default": '"wide"'}, "default: 'wide' is not a number"),
        ({"oremda.params.sigma.min": "30", "oremda.params.sigma.default": None}, "min: 30 is above the maximum"),
        ({"oremda.params.mode.type": "enum"}, "oremda.params.mode.choices: an enum needs its choices"),
        ({"oremda.requirements": '"scipy"'}, "oremda.requirements: '\"scipy\"' is not a list"),
        ({"oremda.ports.image.type": "data"}, "oremda.ports.image.type: expected oremda.ports.input|output"),
        ({"oremda.path": "/opt"}, "oremda.path: not an operator label"),
    ],
)
def test_bad_labels_are_named(change, problem):
    labels = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    problems = check_labels(labels)
    assert len(problems) == 1 and problem in problems[0], problems


def test_template_carries_the_labels_of_its_operator():
    spec = OperatorSpec.from_dict(json.loads((TEMPLATE / "operator" / "operator.json").read_text()))
    assert (TEMPLATE / "Dockerfile").read_text().rstrip().endswith(dockerfile_labels(spec))


def test_labels_of_a_folder_print_like_operators(capsys):
    assert cli.main(["labels", str(TEMPLATE / "operator")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("scale 1.0.0: Multiply an array")
    assert "  param factor: number [-1000..1000] = 2.0" in out


def test_line_breaks_cannot_go_into_a_dockerfile():
    with pytest.raises(ValueError, match="line break"):
        dockerfile_labels(OperatorSpec("x", description="two\nlines"))
