"""Pipeline.readiness(): which nodes of a partial graph can run, and why the others cannot."""

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oremda_lab import Engine
from oremda_lab.spec.pipeline import Blocked, Pipeline

UPSTREAM = sorted((Path(__file__).resolve().parents[1] / "upstream_pipelines").glob("*.json"))


def doc(nodes: dict[str, str | None], edges: list[str]) -> Pipeline:
    """``nodes``: id -> operator name (None: a 2D display); ``edges``: ``"a.out -> b.in"`` (type from the ports)."""
    types = {("picture", "out"): "display"}
    node_docs = [
        {"id": n, "image": f"oremda/{op}"} if op else {"id": n, "type": "display", "display": "2D"}
        for n, op in nodes.items()
    ]
    edge_docs = []
    for edge in edges:
        (a, ap), (b, bp) = (end.strip().split(".") for end in edge.split("->"))
        edge_docs.append({"type": types.get((nodes.get(a), ap), "data"), "from": {"id": a, "port": ap},
                          "to": {"id": b, "port": bp}})  # fmt: skip
    return Pipeline.from_json({"nodes": node_docs, "edges": edge_docs})


def test_a_complete_pipeline_blocks_nothing():
    for path in UPSTREAM:
        readiness = Pipeline.load(path).readiness()
        assert readiness.problems == [] and readiness.blocked == {}, path.name


def test_an_unconnected_input_waits_and_so_does_what_follows():
    p = doc({"blur": "gaussian_blur", "pic": "picture", "view": None}, ["blur.image -> pic.in", "pic.out -> view.in"])
    assert p.readiness().blocked == {
        "blur": Blocked("waiting", "waiting for input: image"),
        "pic": Blocked("waiting", "waiting for upstream: blur"),
        "view": Blocked("waiting", "waiting for upstream: pic"),
    }


def test_a_display_with_nothing_connected_waits_for_its_input(engine):
    # Like an operator's unconnected input (C1), not "done" with nothing to show.
    p = doc({"src": "tiff_reader", "view": None}, [])
    p.nodes["src"].params["filename"] = "a.tif"
    assert [str(x) for x in p.validate()] == ["view.in: required input is not connected"]
    assert p.readiness().blocked == {"view": Blocked("waiting", "waiting for input: in")}
    run = engine.run(p, timeout=60)
    assert (run.nodes["src"].status, run.nodes["view"].status) == ("done", "waiting")
    assert run.waiting == {"view": "waiting for input: in"} and not run.ok


def test_a_display_with_one_runnable_producer_is_not_blocked():
    p = doc(
        {"src": "tiff_reader", "a": "picture", "blur": "gaussian_blur", "b": "picture", "view": None},
        ["src.out -> a.in", "a.out -> view.in", "blur.image -> b.in", "b.out -> view.in"],
    )
    p.nodes["src"].params["filename"] = "x.tif"
    assert set(p.readiness().blocked) == {"blur", "b"}


def test_own_problems_are_errors_named_without_the_node_prefix():
    p = doc({"src": "tiff_reader", "blur": "gaussian_blur"}, ["src.out -> blur.image"])
    p.nodes["src"].params["filename"] = "x.tif"
    p.nodes["blur"].params.update(sigma=-1, nope=2)
    blocked = p.readiness().blocked
    assert blocked["blur"].state == "error"
    assert blocked["blur"].message.startswith("sigma: -1 is below the minimum 0; nope: gaussian_blur has no parameter")
    assert "src" not in blocked


def test_a_bad_edge_stops_its_target_not_its_source():
    p = doc({"src": "tiff_reader", "blur": "gaussian_blur", "ghost_fed": "gaussian_blur"},
            ["src.nope -> blur.image", "src.out -> missing.in"])  # fmt: skip
    p.nodes["src"].params["filename"] = "x.tif"
    blocked = p.readiness().blocked
    assert blocked["blur"] == Blocked("error", "src.nope: no output port 'nope' (has ['out'])")
    assert "src" not in blocked and "missing" not in blocked  # an edge into no node stops nothing
    assert "src.out: edge refers to unknown node 'missing'" not in [str(x) for x in p.validate()]
    assert "missing.in: edge refers to unknown node 'missing'" in [str(x) for x in p.validate()]


def test_every_disjoint_cycle_is_found_and_its_downstream_waits():
    chain = {f"c{i}": "gaussian_blur" for i in range(5)}
    p = doc({**chain, "tail": "gaussian_blur"},
            ["c0.image -> c1.image", "c1.image -> c0.image", "c2.image -> c3.image", "c3.image -> c2.image",
             "c3.image -> c4.image", "c4.image -> tail.image"])  # fmt: skip
    cycles = [str(x) for x in p.validate() if "cycle" in x.message]
    assert cycles == ["c0: cycle: c0 -> c1 -> c0", "c2: cycle: c2 -> c3 -> c2"]
    blocked = p.readiness().blocked
    assert {n: b.state for n, b in blocked.items()} == {
        "c0": "error", "c1": "error", "c2": "error", "c3": "error", "c4": "waiting", "tail": "waiting",
    }  # fmt: skip
    assert blocked["c4"].message == "waiting for upstream: c3"


class Walks(list):
    """A list that counts how often it is iterated over."""

    count = 0

    def __iter__(self):
        self.count += 1
        return super().__iter__()


def test_thousands_of_cycles_off_a_long_chain_are_found_in_one_pass():
    # A chain n0 -> ... -> n1999, each n_i also feeding a two-node cycle c_i <-> d_i. Searching
    # again from the start after each cycle walked the chain once per cycle (quadratic).
    n = 2000
    nodes = {f"{x}{i}": "gaussian_blur" for i in range(n) for x in "ncd"}
    edges = [f"n{i}.image -> n{i + 1}.image" for i in range(n - 1)]
    edges += [e for i in range(n) for e in (f"n{i}.image -> c{i}.image", f"c{i}.image -> d{i}.image",
                                            f"d{i}.image -> c{i}.image")]  # fmt: skip
    p = doc(nodes, edges)
    p.edges = walks = Walks(p.edges)
    cycles = [str(x) for x in p.validate() if "cycle" in x.message]
    assert sorted(cycles) == sorted(f"c{i}: cycle: c{i} -> d{i} -> c{i}" for i in range(n))
    assert walks.count < 10  # a few passes over the edges, not one per cycle
    blocked = p.readiness().blocked
    on_cycles = [blocked[f"{x}{i}"] for i in range(n) for x in "cd"]
    assert all(b.state == "error" and "cycle: c" in b.message for b in on_cycles)


def test_only_document_problems_are_global():
    p = doc({"blur": "gaussian_blur"}, [])
    p.extra["provenance"] = {"operators": {"blur": 1}}
    readiness = p.readiness()
    assert [str(x) for x in readiness.problems] == ["provenance.operators: must map names to objects"]
    assert readiness.blocked == {"blur": Blocked("waiting", "waiting for input: image")}


def test_errors_a_runtime_adds_replace_the_node_findings():
    p = doc({"src": "tiff_reader", "blur": "gaussian_blur"}, ["src.out -> blur.image"])
    blocked = p.readiness({"src": "no image oremda/tiff_reader:1 in the docker engine", "elsewhere": "x"}).blocked
    assert blocked == {
        "src": Blocked("error", "no image oremda/tiff_reader:1 in the docker engine"),
        "blur": Blocked("waiting", "waiting for upstream: src"),
    }


@pytest.mark.parametrize("path", UPSTREAM, ids=lambda p: p.name)
def test_validate_lists_what_readiness_locates(path):
    # Drop every edge: each problem validate reports stops the node it names.
    raw = json.loads(path.read_text())
    raw["edges"] = []
    p = Pipeline.from_json(raw)
    where = {str(x).split(".")[0].split(":")[0] for x in p.validate()}
    assert where == set(p.readiness().blocked)


# -- generated graphs: what readiness lets run is a valid pipeline by validate()'s own rules --

KINDS = {  # operator -> (input ports, output ports); None: a display
    "tiff_reader": ((), ("out",)),
    "gaussian_blur": (("image",), ("image",)),
    "fft2d": (("in",), ("real", "imag")),
    "picture": (("in",), ("out",)),
    "crop2d": (("image",), ("image",)),
    None: (("in",), ()),
}
node_kinds = st.lists(st.sampled_from(list(KINDS)), min_size=1, max_size=7)


@st.composite
def graphs(draw):
    kinds = draw(node_kinds)
    ids = [f"n{i}" for i in range(len(kinds))]
    nodes = []
    for node_id, kind in zip(ids, kinds, strict=True):
        if kind is None:
            nodes.append({"id": node_id, "type": "display", "display": draw(st.sampled_from(["2D", "3D"]))})
        else:
            params = {"sigma": draw(st.sampled_from([1.0, -1.0]))} if kind == "gaussian_blur" else {}
            nodes.append({"id": node_id, "image": f"oremda/{kind}", "params": params})
    edges = []
    for _ in range(draw(st.integers(0, 10))):
        a, b = draw(st.sampled_from(ids + ["ghost"])), draw(st.sampled_from(ids + ["ghost"]))
        outs = KINDS[kinds[ids.index(a)]][1] if a in ids else ("out",)
        ins = KINDS[kinds[ids.index(b)]][0] if b in ids else ("in",)
        port_a = draw(st.sampled_from([*outs, "nope"]))
        port_b = draw(st.sampled_from([*ins, "nope"]))
        kind = draw(st.sampled_from(["data", "display", "binary"]))
        edges.append({"type": kind, "from": {"id": a, "port": port_a}, "to": {"id": b, "port": port_b}})
    return {"nodes": nodes, "edges": edges}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=graphs())
def test_the_runnable_part_of_any_graph_is_a_valid_pipeline(doc):
    p = Pipeline.from_json(doc)
    blocked = p.readiness().blocked
    assert set(blocked) <= set(p.nodes)
    assert all(b.state in ("waiting", "error") and b.message for b in blocked.values())
    runnable = [n for n in doc["nodes"] if n["id"] not in blocked]
    kept = {n["id"] for n in runnable}
    edges = [e for e in doc["edges"] if e["from"]["id"] in kept and e["to"]["id"] in kept]
    assert Pipeline.from_json({"nodes": runnable, "edges": edges}).validate() == []
    # Nothing is blocked without a reason validate() gives, or a blocked node upstream.
    problems = p.validate()
    for node_id, why in blocked.items():
        upstream = {e["from"]["id"] for e in doc["edges"] if e["to"]["id"] == node_id}
        if why.message.startswith("waiting for upstream: "):
            assert set(why.message.removeprefix("waiting for upstream: ").split(", ")) <= upstream & set(blocked)
        elif why.message.startswith("waiting for input: "):
            for port in why.message.removeprefix("waiting for input: ").split(", "):
                assert f"{node_id}.{port}: required input is not connected" in map(str, problems)
        else:
            assert any(x.message in why.message for x in problems), (node_id, why, problems)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    tifffile.imwrite(data / "a.tif", np.random.default_rng(1).random((32, 32), dtype=np.float32))
    with Engine("inline", data) as engine:
        yield engine


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=graphs())
def test_the_engine_runs_the_runnable_part_of_any_graph(engine, doc):
    for node in doc["nodes"]:
        if node.get("image") == "oremda/tiff_reader":
            node["params"] = {"filename": "a.tif"}
    p = Pipeline.from_json(doc)
    blocked = p.readiness().blocked
    run = engine.run(p, timeout=120)
    assert set(run.nodes) == set(p.nodes)
    assert {n: r.status for n, r in run.nodes.items() if n in blocked} == {n: b.state for n, b in blocked.items()}
    finished = ("done", "cached", "error", "skipped")
    assert all(r.status in finished for n, r in run.nodes.items() if n not in blocked), run.nodes
