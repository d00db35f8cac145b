import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oremda_lab import Pipeline, PipelineError
from oremda_lab.registry import default_registry
from oremda_lab.testing import fault_pipeline


def blur_pipeline() -> Pipeline:
    return Pipeline.from_json(
        {
            "nodes": [
                {"id": "src", "image": "oremda/tiff_reader", "params": {"filename": "a.tif"}},
                {"id": "blur", "image": "oremda/gaussian_blur", "params": {"sigma": 3}, "note": "kept"},
                {"id": "pic", "image": "oremda/picture", "params": {"normalize": "log"}},
                {"id": "view", "type": "display", "display": "2D", "params": {}},
            ],
            "edges": [
                {"type": "data", "from": {"id": "src", "port": "out"}, "to": {"id": "blur", "port": "image"}},
                {"type": "data", "from": {"id": "blur", "port": "image"}, "to": {"id": "pic", "port": "in"}},
                {"type": "display", "from": {"id": "pic", "port": "out"}, "to": {"id": "view", "port": "in"}},
            ],
            "custom": {"anything": [1, 2]},
        }
    )


def wheres(pipeline: Pipeline) -> dict[str, str]:
    return {p.where: p.message for p in pipeline.validate()}


def test_upstream_pipelines_load_and_validate(upstream_pipeline):
    pipeline = Pipeline.load(upstream_pipeline)
    assert pipeline.validate() == []
    assert pipeline.to_json()["version"] == 1


def test_round_trip_keeps_unknown_fields():
    doc = blur_pipeline().to_json()
    again = Pipeline.from_json(json.dumps(doc)).to_json()
    assert again == doc
    assert doc["custom"] == {"anything": [1, 2]}
    assert doc["nodes"][1]["note"] == "kept"


def test_valid_pipeline_has_no_problems():
    assert blur_pipeline().validate() == []


def test_unknown_operator_is_named():
    p = blur_pipeline()
    p.nodes["blur"].image = "oremda/no_such_thing"
    assert "unknown operator image" in wheres(p)["blur"]


def test_unknown_node_in_edge():
    p = blur_pipeline()
    p.edges[0].source = type(p.edges[0].source)("ghost", "out")
    assert "unknown node 'ghost'" in wheres(p)["ghost.out"]


def test_unknown_port():
    p = blur_pipeline()
    p.edges[0].target = type(p.edges[0].target)("blur", "img")
    problems = wheres(p)
    assert "no input port 'img'" in problems["blur.img"]
    assert "required input is not connected" in problems["blur.image"]


def test_edge_type_mismatch():
    p = blur_pipeline()
    p.edges[2].type = "data"
    assert any("does not match port type 'display'" in m for m in wheres(p).values())


def test_cycle_is_found():
    p = blur_pipeline()
    p.edges.append(type(p.edges[0])(type(p.edges[0].source)("blur", "image"), type(p.edges[0].source)("src", "data")))
    assert any(m.startswith("cycle:") for m in wheres(p).values())


def test_bad_params_are_named():
    p = blur_pipeline()
    p.nodes["blur"].params = {"sigma": -1, "sigmaa": 2}
    p.nodes["pic"].params = {"normalize": "cubic"}
    problems = wheres(p)
    assert "below the minimum" in problems["blur.sigma"]
    assert "has no parameter 'sigmaa'" in problems["blur.sigmaa"]
    assert "not one of" in problems["pic.normalize"]


def test_ill_typed_param():
    p = blur_pipeline()
    p.nodes["blur"].params = {"sigma": "three"}
    assert "is not a number" in wheres(p)["blur.sigma"]


def test_set_param_validates_and_notifies():
    p = blur_pipeline()
    seen = []
    p.observe(lambda pipeline: seen.append(pipeline.revision))
    p.set_param("blur", "sigma", 4.5)
    assert p.nodes["blur"].params["sigma"] == 4.5 and seen == [1]
    with pytest.raises(PipelineError, match="blur.sigma: 100 is above the maximum"):
        p.set_param("blur", "sigma", 100)
    p.set_param("blur", "sigma", [1.0, 2.0])  # per-axis sigma
    assert seen == [1, 2]


def test_connect_refuses_mismatch_and_duplicates():
    p = blur_pipeline()
    p.add_node("oremda/picture", id="pic2")
    with pytest.raises(PipelineError, match="display output pic.out cannot feed a data input"):
        p.connect("pic", "out", "pic2", "in")
    with pytest.raises(PipelineError, match="input already connected"):
        p.connect("src", "out", "blur", "image")
    with pytest.raises(PipelineError, match="cycle"):
        p.disconnect("src", "out", "blur", "image")
        p.connect("pic", "out", "view", "in")  # fine: displays take many layers
        p.connect("blur", "image", "blur", "image")


def test_remove_node_drops_its_edges():
    p = blur_pipeline()
    p.remove_node("blur")
    assert all("blur" not in (e.source.id, e.target.id) for e in p.edges)


def test_newer_version_and_bad_json_are_clear():
    with pytest.raises(PipelineError, match="newer than this oremda-lab"):
        Pipeline.from_json({"version": 99, "nodes": [], "edges": []})
    with pytest.raises(PipelineError, match="not valid JSON"):
        Pipeline.from_json("{nodes")
    with pytest.raises(PipelineError, match="'nodes' must be a list"):
        Pipeline.from_json({"edges": []})


def test_schema_file_accepts_upstream_and_exports(upstream_pipeline):
    jsonschema = pytest.importorskip("jsonschema")
    from oremda_lab.spec import SCHEMA_PATH

    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.validate(json.loads(upstream_pipeline.read_text()), schema)
    jsonschema.validate(blur_pipeline().to_json(), schema)


# -- generated bad pipelines: validation names a problem and never crashes --------------

OPERATORS = sorted(default_registry().folders())
mutations = st.sampled_from(["drop_edge", "bad_port", "bad_node", "bad_param", "bad_type", "cycle", "bad_image"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutation=mutations, index=st.integers(0, 10), value=st.one_of(st.integers(), st.text(max_size=5), st.none()))
def test_generated_bad_pipelines_are_reported(mutation, index, value):
    doc = blur_pipeline().to_json()
    nodes, edges = doc["nodes"], doc["edges"]
    edge = edges[index % len(edges)]
    if mutation == "drop_edge":
        edges.remove(edges[index % 2])  # blur.image or pic.in loses its only feed
    elif mutation == "bad_port":
        edge["to"]["port"] = f"x{value}"
    elif mutation == "bad_node":
        edge["from"]["id"] = f"ghost{value}"
    elif mutation == "bad_param":
        nodes[1]["params"] = {"sigma": value if not isinstance(value, int) else -abs(value) - 1}
    elif mutation == "bad_type":
        edge["type"] = "binary"
    elif mutation == "cycle":
        edges.append({"type": "data", "from": {"id": "blur", "port": "image"}, "to": {"id": "src", "port": "data"}})
        edges[0]["type"] = "data"
        nodes[0]["params"] = {}
        edges.append({"type": "data", "from": {"id": "pic", "port": "out"}, "to": {"id": "blur", "port": "image"}})
    elif mutation == "bad_image":
        nodes[index % 3]["image"] = f"oremda/{value}"
        if str(value) in OPERATORS:
            return
    assert Pipeline.from_json(doc).validate(), f"{mutation} went unnoticed"


# -- ids are data, never paths; hostile shapes are problems, not crashes --------------------


@pytest.mark.parametrize("node_id", ["../../x", "/etc/x", "a/b", "a\\b", "..", ".", "a\0b", "tab\t", "x" * 129, ""])
def test_node_ids_can_never_name_a_path(node_id):
    doc = blur_pipeline().to_json()
    doc["nodes"][3]["id"] = node_id
    doc["edges"][2]["to"]["id"] = node_id
    problems = Pipeline.from_json(doc).validate()
    assert [p.where for p in problems] == [repr(node_id)] and "id" in problems[0].message
    with pytest.raises(PipelineError, match="node id"):
        blur_pipeline().add_node(display="2D", id=node_id)


def test_a_long_chain_validates_and_its_cycle_is_found():
    # Validation walks the graph without recursion (a 3000-node chain once hit RecursionError).
    ids = [f"n{i}" for i in range(3000)]
    edges = [
        {"from": {"id": a, "port": "image"}, "to": {"id": b, "port": "image"}}
        for a, b in zip(ids, ids[1:], strict=False)
    ]
    doc = {"nodes": [{"id": i, "image": "oremda/gaussian_blur"} for i in ids], "edges": edges}
    doc["edges"].append({"from": {"id": "n2999", "port": "image"}, "to": {"id": "n1", "port": "image"}})
    problems = wheres(Pipeline.from_json(doc))
    cycle = problems["n1"].removeprefix("cycle: ").split(" -> ")
    assert cycle == ids[1:] + ["n1"]
    assert problems["n1.image"] == "input has 2 edges; only one allowed" and problems["n0.image"].startswith("required")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"image": 5}, "'image' must be a string"),
        ({"type": ["display"]}, "'type' must be a string"),
        ({"display": {}}, "'display' must be a string"),
        ({"position": [1, 2]}, "'position' must be an object with numbers x and y"),
        ({"id": {"a": 1}}, "a node id must be a string"),
        ({"params": {"deep": json.loads("[" * 80 + "]" * 80)}}, "JSON nested deeper than 64 levels"),
    ],
)
def test_ill_typed_nodes_are_pipeline_errors(change, message):
    doc = blur_pipeline().to_json()
    doc["nodes"][1].update(change)
    with pytest.raises(PipelineError, match=re.escape(message)):
        Pipeline.from_json(doc)


def test_numbers_that_no_operator_can_take_are_refused():
    pipeline = fault_pipeline({})  # its integer `size` has no maximum
    for value, message in [(10**400, "is too large"), (float("inf"), "not a finite number"), (2**63, "too large")]:
        with pytest.raises(PipelineError, match=message):
            pipeline.set_param("n0", "size", value)
    pipeline.set_param("n0", "size", 2**62)  # large, but an int64 still


def test_an_integer_given_as_a_float_is_an_int_for_the_operator():
    spec = default_registry().get("histograms")
    assert spec.params["bins"].check(20.0) == [] and spec.params["bins"].check(20.5) == ["20.5 is not an integer"]
    resolved = spec.resolved_params({"bins": 20.0})
    assert resolved["bins"] == 20 and type(resolved["bins"]) is int
