import pytest

from oremda_lab.registry import default_registry
from oremda_lab.spec import labels_to_spec, spec_to_labels


@pytest.mark.parametrize("name", sorted(default_registry().folders()))
def test_every_operator_round_trips_through_labels(name):
    spec = default_registry().get(name)
    labels = spec_to_labels(spec)
    assert all(k.startswith("oremda.") and isinstance(v, str) for k, v in labels.items())
    assert labels_to_spec(labels).to_dict() == spec.to_dict()


def test_upstream_labels_without_schema_keys_load():
    labels = {
        "oremda.name": "gaussian_blur",
        "oremda.ports.input.image.type": "data",
        "oremda.ports.output.image.type": "data",
        "oremda.params.sigma.type": "number",
        "oremda.params.sigma.required": "false",
        "maintainer": "someone",
    }
    spec = labels_to_spec(labels)
    assert spec.inputs["image"].type == "data" and spec.params["sigma"].default is None
    assert spec.params["sigma"].required is False


def test_nested_labels_carry_schema():
    labels = spec_to_labels(default_registry().get("gaussian_blur"))
    assert labels["oremda.params.sigma.max"] == "50"
    assert labels["oremda.params.sigma.unit"] == "px"
    assert labels["oremda.ports.input.image.type"] == "data"


def test_labels_need_a_name():
    with pytest.raises(ValueError, match="oremda.name"):
        labels_to_spec({"oremda.description": "x"})
