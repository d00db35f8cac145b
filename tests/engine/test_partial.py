"""Partial graphs run (issue 11 item 2), displays update within a run (item 3), lanes.

A node that cannot run (an input not connected, its own invalid parameter, an image the
runtime cannot find) is reported ``waiting`` or ``error`` and the rest of the graph runs;
a display node's ``done`` event carries its layers as soon as its producers are done.
Order is asserted on events, never on wall-clock time: the slow branch waits for a gate
file that the test opens only when the fast display has been shown.
"""

import os
import shutil
import uuid

import numpy as np
import pytest

from oremda_lab import Engine, Pipeline, PipelineError
from oremda_lab.registry import Registry
from oremda_lab.runtime import RuntimeUnavailable
from oremda_lab.testing import FAULT_OPERATORS, gated_displays, seen

REGISTRY = Registry([FAULT_OPERATORS])


@pytest.fixture
def engine(tmp_path):
    with Engine("inline", tmp_path, registry=REGISTRY) as e:
        yield e


def build(nodes: dict[str, dict], edges: list[str], registry: Registry = REGISTRY) -> Pipeline:
    """``nodes``: id -> operator name (or ``{"display": "1D"}``) and params; ``edges``: "a.out -> b.in"."""
    p = Pipeline(catalog=registry)
    for node_id, spec in nodes.items():
        spec = dict(spec)
        if "display" in spec:
            p.add_node(display=spec["display"], id=node_id)
        else:
            p.add_node(f"oremda/{spec.pop('op')}", id=node_id, params=spec)
    for edge in edges:
        source, target = (end.strip().split(".") for end in edge.split("->"))
        p.connect(*source, *target)
    return p


def plotted(source: str, display: str) -> tuple[dict[str, dict], list[str]]:
    """A plot of ``source``'s output against itself, shown on ``display``."""
    plot = f"{display}_plot"
    nodes = {plot: {"op": "plot"}, display: {"display": "1D"}}
    return nodes, [f"{source}.out -> {plot}.x", f"{source}.out -> {plot}.y", f"{plot}.out -> {display}.in"]


def record(engine: Engine) -> list:
    events: list = []
    engine.subscribe(events.append)
    return events


def test_a_half_built_graph_runs_its_finished_part(engine):
    # A finished branch (n0 -> plot -> view) and a just-dropped blur with nothing wired
    # into it, feeding a picture and a second display.
    shown, shown_edges = plotted("n0", "view")
    p = build(
        {
            "n0": {"op": "fault", "size": 8},
            **shown,
            "blur1": {"op": "gaussian_blur"},
            "pic": {"op": "picture"},
            "view2": {"display": "2D"},
        },
        [*shown_edges, "blur1.image -> pic.in", "pic.out -> view2.in"],
    )
    assert "blur1.image: required input is not connected" in [str(problem) for problem in p.validate()]
    events = record(engine)
    run = engine.run(p)  # refused as a whole before partial graphs ran

    assert {n: r.status for n, r in run.nodes.items()} == {
        "n0": "done", "view_plot": "done", "view": "done", "blur1": "waiting", "pic": "waiting", "view2": "waiting",
    }  # fmt: skip
    assert run.waiting == {
        "blur1": "waiting for input: image",
        "pic": "waiting for upstream: blur1",
        "view2": "waiting for upstream: pic",
    }
    assert not run.ok and not run.errors
    # What the display node shows: fault emits `size` ones; plot stacks x over y.
    np.testing.assert_array_equal(run.displays["view"][0].data, np.ones((2, 8)))
    assert run.displays["view2"] == []
    states = {(e.node, e.state): e for e in events if e.node}
    assert states["blur1", "waiting"].message == "waiting for input: image"
    assert not any(e.node in ("blur1", "pic") and e.state in ("queued", "running") for e in events)
    np.testing.assert_array_equal(states["view", "done"].layers[0].data, np.ones((2, 8)))


def test_a_node_with_its_own_problem_is_its_error_and_its_downstream_waits(engine):
    nodes = {"n0": {"op": "fault"}, "n1": {"op": "fault"}, "n2": {"op": "fault", "tag": "other"}}
    p = build(nodes, ["n0.out -> n1.in"])
    p.nodes["n0"].params["mode"] = "explode"  # as a hand-edited file may say
    events = record(engine)
    run = engine.run(p)
    assert run.nodes["n0"].status == "error" and run.errors["n0"]["message"].startswith("mode: 'explode' is not one of")
    assert run.waiting == {"n1": "waiting for upstream: n0"}
    assert run.nodes["n2"].status == "done" and run.outputs["n2"]["out"].data.tolist() == [1.0] * 16
    errors = [e for e in events if e.node == "n0"]
    assert [e.state for e in errors] == ["error"]  # never queued, never started


def test_a_document_problem_still_refuses_the_whole_run(engine):
    p = build({"n0": {"op": "fault"}}, [])
    p.extra["provenance"] = "exported"
    with pytest.raises(PipelineError, match="provenance: must be an object"):
        engine.submit(p)


def test_an_operator_the_runtime_cannot_find_fails_only_its_node(engine, monkeypatch):
    # What a container runtime does for an image it lacks: image_digest raises LookupError.
    # Before, that escaped from planning and failed the whole run.
    found = engine.runtime.image_digest

    def digest(spec):
        if spec.name == "plot":
            raise LookupError("no image oremda/plot:1.0.0 in the test engine; build it")
        return found(spec)

    monkeypatch.setattr(engine.runtime, "image_digest", digest)
    shown, shown_edges = plotted("n0", "view")
    p = build({"n0": {"op": "fault"}, "n1": {"op": "fault"}, **shown}, ["n0.out -> n1.in", *shown_edges])
    run = engine.run(p)
    assert run.errors == {"view_plot": {"message": "no image oremda/plot:1.0.0 in the test engine; build it"}}
    assert run.waiting == {"view": "waiting for upstream: view_plot"}
    assert run.nodes["n0"].status == run.nodes["n1"].status == "done"
    assert set(run.provenance["nodes"]) == {"n0", "n1"}


def test_a_display_is_shown_as_soon_as_its_producers_are_done(engine, tmp_path):
    # Fast branch f -> fast; slow branch s waits for the gate, which opens only once the
    # fast display has been shown: the slow branch cannot finish first.
    p = gated_displays()
    events = []

    def on_event(event):
        events.append(event)
        if (event.node, event.state) == ("fast", "done"):
            (tmp_path / "gate").touch()

    engine.subscribe(on_event)
    run = engine.run(p)
    assert run.ok, run.errors
    order = [(e.node, e.state) for e in events]
    assert order.index(("fast", "done")) < order.index(("s", "done")) < order.index(("slow", "done"))
    shown = {e.node: e.layers for e in events if e.state == "done" and e.layers is not None}
    assert set(shown) == {"fast", "slow"}
    np.testing.assert_array_equal(shown["fast"][0].data, np.ones((2, 4)))
    np.testing.assert_array_equal(shown["slow"][0].data, run.displays["slow"][0].data)

    again = record(engine)
    engine.run(p)  # all cached: the displays are shown again from the cache
    assert [e.node for e in again if e.layers is not None] == ["fast", "slow"]


def test_lanes_run_side_by_side_and_newest_wins_within_one(engine, tmp_path):
    waiting = build({"a": {"op": "fault", "mode": "wait", "seconds": 120}}, [])
    started = seen(engine, "a")
    first = engine.submit(waiting, lane="one")
    assert started.wait(30)
    other = build({"b": {"op": "fault", "tag": "x"}}, [])
    second = engine.submit(other, lane="two")
    other.set_param("b", "tag", "y")
    third = engine.submit(other, lane="two")
    (tmp_path / "gate").touch()
    assert first.result(60).ok and not first.result().superseded  # another lane does not supersede it
    assert second.result(60).superseded and second.result().pipeline.nodes["b"].params["tag"] == "x"  # its own
    assert third.result(60).ok and third.result().pipeline.nodes["b"].params["tag"] == "y"
    assert len({first.run_id, second.run_id, third.run_id}) == 3
    assert third.result().id == third.run_id


@pytest.mark.docker
def test_a_missing_image_on_docker_fails_only_its_node(tmp_path):
    """A real Docker engine: an operator without an image, and an image that cannot be pulled."""
    from oremda_lab.images.build import ImageBuilder
    from oremda_lab.runtime.docker import SESSION_LABEL, connect

    try:
        client = connect(engine="docker")
    except RuntimeUnavailable as e:
        if os.environ.get("OREMDA_REQUIRE_ENGINES"):
            pytest.fail(str(e))
        pytest.skip(str(e))
    ImageBuilder(client, engine="docker", registry=REGISTRY, log=lambda m: None).build(["fault"])
    # An operator folder no image was ever built from (a fresh name).
    name = f"absent_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "operators" / name
    shutil.copytree(FAULT_OPERATORS / "fault", folder)
    description = (folder / "operator.json").read_text().replace('"name": "fault"', f'"name": "{name}"')
    (folder / "operator.json").write_text(description)
    registry = Registry([FAULT_OPERATORS, tmp_path / "operators"])
    nodes = {"ok": {"op": "fault"}, "gone": {"op": name}, "after": {"op": "fault"}}
    p = build(nodes, ["gone.out -> after.in"], registry)
    # A registry reference nothing answers on: the pull fails, for that node only.
    p.nodes["unpullable"] = Pipeline.from_json(
        {"nodes": [{"id": "unpullable", "image": "127.0.0.1:9/oremda/nothing:1"}], "edges": []}
    ).nodes["unpullable"]
    with Engine("docker", tmp_path, registry=registry, start_timeout=60) as engine:
        session = str(engine.arena.path)
        run = engine.run(p, timeout=300)
        assert run.nodes["ok"].status == "done", run.errors
        assert f"no image oremda/{name}:1.0.0 in the docker engine" in run.errors["gone"]["message"]
        assert "cannot pull 127.0.0.1:9/oremda/nothing:1" in run.errors["unpullable"]["message"]
        assert run.waiting == {"after": "waiting for upstream: gone"}
    assert not client.containers.list(all=True, filters={"label": f"{SESSION_LABEL}={session}"})
