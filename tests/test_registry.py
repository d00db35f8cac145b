"""The registry: folders by name first, then image catalogs; exact image references only from catalogs."""

import dataclasses

import pytest

from oremda_lab.engine import Engine
from oremda_lab.registry import Registry, names_image, split_reference
from oremda_lab.spec.operator import OperatorSpec
from oremda_lab.spec.pipeline import Pipeline
from oremda_lab.testing import FAULT_OPERATORS


class DictCatalog:
    """Images in memory: reference -> spec (a stand-in for an engine's image labels)."""

    def __init__(self, images: dict[str, OperatorSpec]):
        self.images = images
        self.asked: list[str] = []

    def lookup(self, image: str) -> OperatorSpec | None:
        self.asked.append(image)
        return self.images.get(image)

    def all(self) -> list[OperatorSpec]:
        return list(self.images.values())


def image_spec(name: str, ref: str) -> OperatorSpec:
    return OperatorSpec(name, version="9.9", image=ref)


@pytest.mark.parametrize(
    "ref, parts",
    [
        ("crop2d", ("crop2d", "", "")),
        ("localhost:5000/lab/crop2d", ("localhost:5000/lab/crop2d", "", "")),
        ("localhost:5000/lab/crop2d:1.2", ("localhost:5000/lab/crop2d", "1.2", "")),
        ("ghcr.io/lab/crop2d@sha256:" + "a" * 64, ("ghcr.io/lab/crop2d", "", "sha256:" + "a" * 64)),
    ],
)
def test_split_reference(ref, parts):
    assert tuple(split_reference(ref)) == parts
    assert str(split_reference(ref)) == ref


def test_a_folder_wins_by_name_and_an_exact_reference_asks_only_the_catalogs():
    exact = "127.0.0.1:5000/lab/fault:1.0.0"
    catalog = DictCatalog({exact: image_spec("fault", exact), "oremda/relay": image_spec("relay", "oremda/relay")})
    registry = Registry([FAULT_OPERATORS], catalogs=[catalog])
    folder = registry.lookup("oremda/fault:1.0.0")
    assert folder.path is not None and folder.image is None
    assert catalog.asked == []  # the folder answered
    assert registry.lookup(exact).image == exact and registry.lookup(exact).version == "9.9"
    assert registry.lookup("oremda/relay").image == "oremda/relay"  # only an image: found after the folders
    assert registry.lookup("127.0.0.1:5000/lab/other:1") is None
    names = [s.name for s in registry.all()]
    assert names.count("fault") == 1 and "relay" in names
    assert registry.all()[names.index("fault")].path is not None


def test_a_miss_is_not_remembered():
    ref = "127.0.0.1:5000/lab/late:1"
    catalog = DictCatalog({})
    registry = Registry([FAULT_OPERATORS], catalogs=[catalog])
    assert registry.lookup(ref) is None
    catalog.images[ref] = image_spec("late", ref)  # as after a pull
    assert registry.lookup(ref).name == "late"


def test_names_image_sees_registries_orgs_and_digests_but_not_operator_names():
    assert not any(names_image(r) for r in ("fault", "oremda/fault", "oremda/fault:1", "localhost/oremda/fault:1"))
    assert all(names_image(r) for r in ("lab/fault", "127.0.0.1:5000/oremda/fault", "oremda/fault@sha256:ab"))


def test_an_image_only_operator_on_the_local_runtime_fails_its_node_clearly(tmp_path):
    fault = Registry([FAULT_OPERATORS]).get("fault")
    ref = "127.0.0.1:5000/lab/relay@sha256:" + "b" * 64
    relay = dataclasses.replace(fault, name="relay", path=None, image=ref)
    registry = Registry([FAULT_OPERATORS], catalogs=[DictCatalog({ref: relay})])
    pipeline = {"nodes": [{"id": "a", "image": ref, "params": {}}], "edges": []}
    with Engine("local", tmp_path, registry=registry) as engine:
        run = engine.run(Pipeline.from_json(pipeline))
    assert run.errors["a"]["message"] == f"operator relay exists only as image {ref}; use --runtime docker|podman"


def test_an_exact_image_on_a_runtime_without_images_is_one_clear_node_error(tmp_path):
    ref = "127.0.0.1:5000/lab/fault@sha256:" + "e" * 64
    pipeline = {"nodes": [{"id": "a", "image": ref, "params": {}}, {"id": "b", "image": "oremda/fault"}], "edges": []}
    with Engine("local", tmp_path, registry=Registry([FAULT_OPERATORS])) as engine:
        run = engine.run(Pipeline.from_json(pipeline))
    assert run.errors == {"a": {"message": f"{ref!r} names an image; use --runtime docker|podman to run it"}}
    assert run.nodes["b"].status == "done"  # the rest of the graph runs
