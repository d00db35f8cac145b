import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from widget_helpers import (
    BLUR_DISPLAY,
    STEPS_OPERATOR,
    STEPS_RUN,
    RecordingComm,
    command,
    front_end_says,
    wait_for,
)

from oremda_lab import Engine, Pipeline, PipelineEditor, PipelineError
from oremda_lab.testing import write_operator
from oremda_lab.widget.editor import _run_key

CASES = json.loads((Path(__file__).parent / "connection_cases.json").read_text())


@pytest.fixture
def editor(comm):
    e = PipelineEditor(BLUR_DISPLAY, auto_run=False, comm=comm)
    yield e
    e.close()


def test_graph_trait_is_the_pipeline_json(editor):
    assert editor.graph == editor.pipeline.to_json()
    assert {o["name"] for o in editor.operators} >= {"gaussian_blur", "picture", "tiff_reader"}


def test_python_edits_reach_the_front_end(editor, comm):
    editor.pipeline.set_param("blur", "sigma", 4.0)
    graph, _ = comm.updates("graph")[-1]
    assert next(n for n in graph["nodes"] if n["id"] == "blur")["params"]["sigma"] == 4.0
    editor.pipeline.add_node("oremda/fft2d", id="fft")
    assert comm.updates("graph")[-1][0]["nodes"][-1]["id"] == "fft"


def test_setting_the_graph_trait_replaces_the_pipeline(editor):
    doc = editor.pipeline.to_json()
    doc["nodes"][2]["params"]["sigma"] = 9.0
    editor.graph = doc
    assert editor.pipeline.nodes["blur"].params["sigma"] == 9.0


def test_a_shared_pipeline_stays_one_object(comm):
    p = Pipeline.from_json(BLUR_DISPLAY)
    e = PipelineEditor(p, auto_run=False, comm=comm)
    assert e.pipeline is p
    command(e, {"op": "set_param", "id": "blur", "name": "sigma", "value": 5})
    assert p.nodes["blur"].params["sigma"] == 5
    e.close()


def test_front_end_commands_go_through_pipeline_methods(editor):
    def say(cmd):
        return command(editor, cmd)

    r = say({"op": "add_node", "image": "oremda/gaussian_blur", "id": "blur2", "position": {"x": 10, "y": 20}})
    assert r["ok"] and r["problems"] == []
    assert editor.pipeline.nodes["blur2"].position == {"x": 10, "y": 20}
    assert say({"op": "disconnect", "from": {"id": "blur", "port": "image"}, "to": {"id": "pic", "port": "in"}})["ok"]
    assert say({"op": "connect", "from": {"id": "blur", "port": "image"}, "to": {"id": "blur2", "port": "image"}})["ok"]
    assert say({"op": "connect", "from": {"id": "blur2", "port": "image"}, "to": {"id": "pic", "port": "in"}})["ok"]
    assert say({"op": "set_position", "id": "blur", "x": 5, "y": 6})["ok"]
    assert say({"op": "layout", "positions": {"data": {"x": 0, "y": 0}, "read": {"x": 200, "y": 0}}})["ok"]
    assert editor.pipeline.nodes["read"].position == {"x": 200.0, "y": 0.0}
    assert say({"op": "remove_node", "id": "blur2"})["ok"]
    assert "blur2" not in editor.graph and editor.graph == editor.pipeline.to_json()


def test_refusals_come_back_with_reasons(editor):
    r = front_end_says(
        editor,
        {"type": "command", "id": 7,
         "command": {"op": "connect", "from": {"id": "data", "port": "data"}, "to": {"id": "pic", "port": "in"}}},
    )  # fmt: skip
    why = "pic.in: binary output data.data cannot feed a data input"
    assert r == {"type": "reply", "id": 7, "ok": False, "problems": [why]}
    r = command(editor, {"op": "set_param", "id": "blur", "name": "sigma", "value": -1})
    assert not r["ok"] and "below the minimum" in r["problems"][0]
    r = command(editor, {"op": "explode"})
    assert not r["ok"] and "unknown editor command" in r["problems"][0]
    r = command(editor, {"op": "remove_node"})
    assert not r["ok"] and r["problems"] == ["id"]


def test_every_request_gets_one_reply_with_its_id(editor, comm, monkeypatch):
    # The front end gives up on a request after a timeout; the kernel never leaves one unanswered.
    r = front_end_says(editor, {"type": "sync", "id": "s1"})
    assert r == {"type": "reply", "id": "s1", "ok": True, "problems": []}
    # A sync re-sends what the front end shows: the Python pipeline and the run state.
    resent = next(d["state"] for d, _ in reversed(comm.messages) if d.get("method") == "update")
    assert set(resent) == {"graph", "status", "run"} and resent["graph"] == editor.pipeline.to_json()
    r = front_end_says(editor, {"type": "explode", "id": 5})
    assert r == {"type": "reply", "id": 5, "ok": False, "problems": ["unknown editor request 'explode'"]}
    r = front_end_says(editor, {"type": "command", "id": 6})
    assert (r["id"], r["ok"], r["problems"]) == (6, False, ["command"])

    def broken(command):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(editor, "apply", broken)
    r = front_end_says(editor, {"type": "command", "id": 8, "command": {"op": "remove_node", "id": "pic"}})
    assert r == {"type": "reply", "id": 8, "ok": False, "problems": ["internal error: disk on fire"]}


def test_messages_without_an_id_get_no_reply(editor, comm):
    editor._handle_msg({"content": {"data": {"method": "custom", "content": {"type": "sync"}}}, "buffers": []})
    assert comm.replies() == []


def test_a_refused_edit_changes_nothing(editor, comm):
    before, sent = editor.pipeline.to_json(), len(comm.updates("graph"))
    r = command(editor, {"op": "set_param", "id": "blur", "name": "sigma", "value": 1000})
    assert not r["ok"] and "above the maximum" in r["problems"][0]
    assert editor.pipeline.to_json() == before and len(comm.updates("graph")) == sent


def test_a_batch_is_all_or_nothing(editor):
    before = editor.pipeline.to_json()
    r = front_end_says(
        editor,
        {"type": "command", "id": 1, "command": {"op": "batch", "commands": [
            {"op": "remove_node", "id": "pic"},
            {"op": "set_param", "id": "blur", "name": "sigma", "value": 1000},
        ]}},
    )  # fmt: skip
    assert not r["ok"]
    assert editor.pipeline.to_json() == before


@pytest.mark.parametrize("case", CASES["cases"], ids=lambda c: f"{'.'.join(c['from'])}->{'.'.join(c['to'])}")
def test_kernel_connection_rules_match_the_front_end(case, tmp_path):
    # The same table drives js/tests/ports.test.ts: both sides must agree.
    from oremda_lab.registry import Registry

    for op in CASES["operators"]:
        folder = tmp_path / op["name"]
        folder.mkdir()
        (folder / "operator.json").write_text(json.dumps(op))
    p = Pipeline.from_json(CASES["graph"], catalog=Registry([tmp_path], builtin=False))
    if case["ok"]:
        p.connect(case["from"][0], case["from"][1], case["to"][0], case["to"][1])
    else:
        with pytest.raises(PipelineError, match=re.escape(case["says"])):
            p.connect(case["from"][0], case["from"][1], case["to"][0], case["to"][1])


def test_positions_alone_do_not_rerun():
    p = Pipeline.from_json(BLUR_DISPLAY)
    key = _run_key(p)
    p.set_position("blur", 100, 100)
    assert _run_key(p) == key
    p.set_param("blur", "sigma", 3.0)
    assert _run_key(p) != key


class FakeEngine:
    """Records submissions (run ids 1, 2, ...) and lets the test play engine events."""

    def __init__(self):
        self.submitted = []
        self.lanes = []
        self.subscribers = []
        self.futures = []

    def submit(self, pipeline, *, lane=None):
        from concurrent.futures import Future

        self.submitted.append(pipeline.to_json())
        self.lanes.append(lane)
        future = Future()
        future.run_id = len(self.submitted)
        self.futures.append(future)
        return future

    def subscribe(self, cb):
        self.subscribers.append(cb)
        return lambda: self.subscribers.remove(cb)


def test_a_run_that_fails_before_it_starts_is_forgotten(comm):
    from oremda_lab import NodeEvent

    engine = FakeEngine()
    e = PipelineEditor(BLUR_DISPLAY, engine, comm=comm)
    engine.futures[0].set_exception(RuntimeError("the engine was closed before this run started"))
    assert e.run == {"state": "error", "message": "the engine was closed before this run started"}
    # The editor no longer takes that run id as its own (nothing kept per failed run).
    engine.subscribers[0](NodeEvent(1, "blur", "running"))
    e._flush_status()
    assert "blur" not in e.status
    e.close()


def test_node_status_and_errors_reach_the_widget(comm):
    from oremda_lab import NodeEvent

    engine = FakeEngine()
    e = PipelineEditor(BLUR_DISPLAY, engine, comm=comm)
    assert len(engine.submitted) == 1 and e.run["state"] == "running"
    emit = engine.subscribers[0]
    emit(NodeEvent(1, None, "starting", message="starting 4 workers"))
    assert e.run == {"state": "starting", "message": "starting 4 workers"}
    emit(NodeEvent(1, "blur", "preparing", message="creating environment for gaussian_blur (3 packages) ..."))
    wait_for(lambda: "blur" in e.status)  # node events are batched (STATUS_INTERVAL_S)
    assert e.status["blur"]["state"] == "preparing"
    assert e.status["blur"]["message"] == "creating environment for gaussian_blur (3 packages) ..."
    emit(NodeEvent(1, "blur", "running"))
    error = {"message": "boom", "traceback": "tb", "log_tail": "log", "exit_status": 1}
    emit(NodeEvent(1, "blur", "error", duration_s=0.5, error=error))
    wait_for(lambda: e.status["blur"]["state"] == "error")
    assert e.status["blur"] == {
        "state": "error", "duration_s": 0.5, "cached": False, "error": error, "message": None, "progress": None,
    }  # fmt: skip
    e.pipeline.set_position("blur", 1, 2)
    assert len(engine.submitted) == 1  # moving a node does not re-run
    e.pipeline.set_param("blur", "sigma", 3.0)
    assert len(engine.submitted) == 2
    # A partial graph still runs (the engine runs what it can); the run bar lists what is missing.
    e.pipeline.disconnect("blur", "image", "pic", "in")
    assert len(engine.submitted) == 3 and e.run["state"] == "running"
    assert any("pic.in" in p for p in e.run["problems"])
    assert set(engine.lanes) == {id(e)}  # one lane: newest wins among this editor's runs only
    e.close()


def test_waiting_and_progress_show_on_the_node(comm):
    from oremda_lab import NodeEvent

    engine = FakeEngine()
    e = PipelineEditor(BLUR_DISPLAY, engine, comm=comm)
    emit = engine.subscribers[0]
    emit(NodeEvent(1, "pic", "waiting", message="waiting for input: in"))
    emit(NodeEvent(1, "blur", "running", progress=0.25, message="16/64 partitions"))
    wait_for(lambda: {"pic", "blur"} <= set(e.status))
    assert (e.status["pic"]["state"], e.status["pic"]["message"]) == ("waiting", "waiting for input: in")
    assert (e.status["blur"]["progress"], e.status["blur"]["message"]) == (0.25, "16/64 partitions")
    emit(NodeEvent(1, "blur", "running", progress=0.75, message="48/64 partitions"))
    wait_for(lambda: e.status["blur"]["progress"] == 0.75)
    # Events of runs this editor did not submit (another editor on the same engine) are ignored.
    emit(NodeEvent(99, None, "starting", message="not mine"))
    assert e.run["state"] == "running"  # run-level events apply at once
    emit(NodeEvent(99, "pic", "error", error={"message": "not mine"}))
    emit(NodeEvent(1, "read", "running"))  # this editor's, after it: shown in the same batch or a later one
    wait_for(lambda: "read" in e.status)
    assert e.status["pic"]["state"] == "waiting" and e.status["blur"]["progress"] == 0.75
    e.close()


def test_an_edit_sends_the_new_run_state_and_graph_in_one_message(comm):
    with Engine("inline") as engine:
        e = PipelineEditor(BLUR_DISPLAY, engine, comm=comm)
        wait_for(lambda: e.run["state"] == "done")
        before = len(comm.messages)
        command(e, {"op": "set_param", "id": "blur", "name": "sigma", "value": 2.5})
        first = next(d["state"] for d, _ in comm.messages[before:] if d.get("method") == "update")
        assert first["run"]["state"] == "running"
        assert next(n for n in first["graph"]["nodes"] if n["id"] == "blur")["params"]["sigma"] == 2.5
        e.close()


def test_a_partial_display_says_how_far_it_got_and_the_final_one_replaces_it(comm):
    from oremda_lab import NodeEvent
    from oremda_lab.worker.sdk import PortValue

    engine = FakeEngine()
    e = PipelineEditor(BLUR_DISPLAY, engine, comm=comm)
    emit = engine.subscribers[0]
    half = np.zeros((8, 8), np.float32)
    half[:4] = 1.0  # rows of the partitions done so far; the rest is zero
    picture = {"kind": "picture", "min": 0.0, "max": 1.0}
    emit(NodeEvent(1, "view", "done", layers=(PortValue(half, picture),), partial=True, message="1/2 partitions"))
    shown = e.displays["view"]
    assert shown["partial"] == "1/2 partitions" and "view" not in e._runs[1].shown  # the run's end sends the final
    emit(NodeEvent(1, "view", "done", layers=(PortValue(np.ones((8, 8), np.float32), picture),)))
    final = e.displays["view"]
    assert "partial" not in final and final["revision"] > shown["revision"] and "view" in e._runs[1].shown
    assert np.frombuffer(final["layers"][0]["pixels"], np.uint8).min() == 255
    e.close()


def test_run_button_when_auto_run_is_off(comm):
    engine = FakeEngine()
    e = PipelineEditor(BLUR_DISPLAY, engine, auto_run=False, comm=comm)
    assert engine.submitted == [] and e.auto_run is False
    e.pipeline.set_param("blur", "sigma", 3.0)
    assert engine.submitted == [] and e.run == {"state": "idle", "message": "edited since the last run: press Run"}
    r = front_end_says(e, {"type": "run", "id": 3})  # the toolbar's Run button
    assert r == {"type": "reply", "id": 3, "ok": True, "problems": []}
    assert len(engine.submitted) == 1 and e.run["state"] == "running"
    front_end_says(e, {"type": "run", "id": 4})  # Run again runs again, even unchanged
    assert len(engine.submitted) == 2
    e.auto_run = True  # from Python: edits run again
    e.pipeline.set_param("blur", "sigma", 4.0)
    assert len(engine.submitted) == 3
    e.close()


def test_examples_menu_offers_the_bundled_pipelines(comm, tmp_path):
    from oremda_lab.examples import example_pipelines

    bundled = example_pipelines()
    assert {"lattice_analysis", "eels_background"} <= set(bundled)
    e = PipelineEditor(BLUR_DISPLAY, FakeEngine(), auto_run=False, comm=comm)
    assert [x["name"] for x in e.examples] == sorted(bundled)
    eels = next(x for x in e.examples if x["name"] == "eels_background")
    truth = json.loads(bundled["eels_background"].read_text())
    assert eels["description"] == truth["description"]
    assert [n["id"] for n in eels["graph"]["nodes"]] == [n["id"] for n in truth["nodes"]]
    # The menu loads one as an ordinary (undoable) replace command.
    assert command(e, {"op": "replace", "graph": eels["graph"]})["ok"]
    assert e.pipeline.to_json() == Pipeline.load(bundled["eels_background"]).to_json()
    e.close()
    # Own examples: a path, a dict or a Pipeline; one that does not load is left out.
    (tmp_path / "bad.json").write_text('{"nodes": [')  # not JSON
    mine = {"blur": BLUR_DISPLAY, "broken": tmp_path / "bad.json", "same": Pipeline.from_json(BLUR_DISPLAY)}
    e = PipelineEditor(BLUR_DISPLAY, FakeEngine(), auto_run=False, examples=mine, comm=comm)
    assert [x["name"] for x in e.examples] == ["blur", "same"]
    e.close()


def test_runs_update_displays_in_place(comm):
    with Engine("inline") as engine:
        e = PipelineEditor(BLUR_DISPLAY, engine, comm=comm)
        wait_for(lambda: e.run["state"] in ("done", "error"))
        assert e.run["state"] == "done", e.run
        states = {n: s["state"] for n, s in e.status.items()}
        assert states == dict.fromkeys(["data", "read", "blur", "pic", "view"], "done")
        (layer,) = e.displays["view"]["layers"]
        assert (layer["kind"], layer["width"], layer["height"]) == ("picture", 256, 256)
        first = np.frombuffer(layer["pixels"], np.uint8)
        assert first.min() == 0 and first.max() == 255
        # On the wire the pixels travel as one binary buffer, not JSON.
        state, buffers = comm.updates("displays")[-1]
        assert any(len(b) == 256 * 256 for b in buffers)
        rev = e.displays["view"]["revision"]
        e.pipeline.set_param("blur", "sigma", 8.0)
        wait_for(lambda: e.displays["view"]["revision"] > rev and e.run["state"] == "done")
        assert e.status["data"]["state"] == "cached" and e.status["blur"]["state"] == "done"
        second = np.frombuffer(e.displays["view"]["layers"][0]["pixels"], np.uint8)
        assert np.abs(second.astype(int) - first).mean() > 1  # more blur, different picture
        # An upstream failure keeps the last picture, marked stale, and says which node failed.
        e.pipeline.set_param("read", "series", 7)
        wait_for(lambda: e.run["state"] == "error")
        assert e.run["message"].startswith("read: ")
        assert e.status["read"]["state"] == "error" and e.status["read"]["error"]["message"]
        assert e.status["blur"]["state"] == "skipped"
        assert e.displays["view"]["stale"] and e.displays["view"]["layers"][0]["pixels"] == second.tobytes()
        e.close()


def test_a_partial_graph_runs_what_it_can_and_displays_arrive_as_their_producers_finish(comm):
    with Engine("inline") as engine:
        e = PipelineEditor(BLUR_DISPLAY, engine, comm=comm)
        wait_for(lambda: e.run["state"] == "done")
        # A new, unconnected node: the finished part still runs and updates; the new node waits.
        assert command(e, {"op": "add_node", "image": "oremda/fft2d", "id": "fft"})["ok"]
        rev = e.displays["view"]["revision"]
        assert command(e, {"op": "set_param", "id": "blur", "name": "sigma", "value": 5})["ok"]
        wait_for(lambda: e.run["state"] == "done" and e.displays["view"]["revision"] > rev)
        assert e.status["fft"] == {
            "state": "waiting", "duration_s": None, "cached": False, "error": None, "message": "waiting for input: in",
            "progress": None,
        }  # fmt: skip
        assert e.status["blur"]["state"] == "done" and e.run["problems"] == ["fft.in: required input is not connected"]
        # The display was sent when its producers were done: before the message that ends the run.
        runs = [i for i, (d, _) in enumerate(comm.messages) if d.get("state", {}).get("run", {}).get("state") == "done"]
        views = [i for i, (d, _) in enumerate(comm.messages) if "view" in d.get("state", {}).get("displays", {})]
        assert views[-1] < runs[-1], "the display came with the end of the run, not before"
        e.close()


def test_two_editors_share_one_engine_without_interfering(comm):
    with Engine("inline") as engine:
        a = PipelineEditor(BLUR_DISPLAY, engine, comm=comm)
        b = PipelineEditor(BLUR_DISPLAY, engine, comm=RecordingComm())  # both submitted at once: both run
        wait_for(lambda: a.run["state"] == "done" and b.run["state"] == "done")
        b_before = (b.run, b.status, b.displays["view"]["revision"], len(b.comm.messages))
        rev = a.displays["view"]["revision"]
        for sigma in (3, 4, 5):  # a drag on A: newest wins among A's runs only
            a.pipeline.set_param("blur", "sigma", sigma)
        # (A drag sends previews; the full-size picture follows when it stops.)
        wait_for(lambda: a.run["state"] == "done" and a.displays["view"]["revision"] > rev)
        wait_for(lambda: not a.displays["view"].get("preview"))
        # The engine calls subscribers before a run's future resolves: B has heard all of A's
        # events by now. Flush what B would have batched from them, as its timer does.
        b._flush_status()
        assert (b.run, b.status, b.displays["view"]["revision"], len(b.comm.messages)) == b_before
        pixels = {x: np.frombuffer(x.displays["view"]["layers"][0]["pixels"], np.uint8) for x in (a, b)}
        assert np.abs(pixels[a].astype(int) - pixels[b]).mean() > 1  # A shows sigma 5, B still sigma 1.5
        # Closing one editor leaves the shared engine to the other.
        a.close()
        b.pipeline.set_param("blur", "sigma", 5)
        wait_for(lambda: b.run["state"] == "done" and b.displays["view"]["revision"] > b_before[2])
        assert np.array_equal(np.frombuffer(b.displays["view"]["layers"][0]["pixels"], np.uint8), pixels[a])
        b.close()


def test_one_d_displays_arrive_as_png(comm):
    from oremda_lab.spec.pipeline import Node
    from oremda_lab.widget._display import encode
    from oremda_lab.worker.sdk import PortValue

    x = np.linspace(0, 1, 50)
    payload = encode(Node("v", type="display", display="1D"), [PortValue(np.stack([x, x**2]), {"kind": "plot"})], 3)
    (layer,) = payload["layers"]
    assert layer["kind"] == "png" and layer["png"][:4] == b"\x89PNG" and payload["revision"] == 3


def test_pictures_scale_linear_and_log():
    from oremda_lab.widget._display import picture_bytes

    img = np.array([[0.0, 1.0], [10.0, 100.0]])
    lin = np.frombuffer(picture_bytes(img, {"min": 0.0, "max": 100.0}), np.uint8)
    assert lin.tolist() == [0, 2, 25, 255]
    log = np.frombuffer(picture_bytes(img, {"normalize": "log", "min": 0.0}), np.uint8)
    assert log[0] == 0 and log[-1] == 255 and log[1] > lin[1]


def test_large_pictures_are_block_averaged():
    from oremda_lab.spec.pipeline import Node
    from oremda_lab.widget._display import bin_factor, binned, encode
    from oremda_lab.worker.sdk import PortValue

    x = np.arange(5 * 7, dtype=np.float64).reshape(5, 7)
    assert binned(x, 2).tolist() == x[:4, :6].reshape(2, 2, 3, 2).mean(axis=(1, 3)).tolist()
    assert (bin_factor((1024, 1024), 512), bin_factor((1025, 10), 512), bin_factor((300, 300), 512)) == (2, 3, 1)
    assert bin_factor((4096, 4096), None) == 1
    img = np.random.default_rng(0).random((1024, 1000))
    layer = encode(Node("v", type="display", display="2D"), [PortValue(img, {"kind": "picture"})], 1)["layers"][0]
    assert (layer["width"], layer["height"], layer["scale"], len(layer["pixels"])) == (500, 512, 2, 500 * 512)


@pytest.mark.parametrize("runtime", ["inline", "local"])
def test_progress_reported_by_an_operator_reaches_its_node(comm, tmp_path, runtime):
    from oremda_lab.registry import Registry

    write_operator(tmp_path, STEPS_OPERATOR, STEPS_RUN)
    seen = []
    with Engine(runtime, registry=Registry([tmp_path])) as engine:
        e = PipelineEditor({"nodes": [{"id": "s", "image": "oremda/steps"}], "edges": []}, engine, comm=comm)
        e.observe(lambda change: seen.append(change["new"].get("s")), "status")
        wait_for(lambda: e.run["state"] in ("done", "error"), timeout=60)
        assert e.run["state"] == "done", e.run
        e.close()
    reports = [(s["progress"], s["message"]) for s in seen if s and s["state"] == "running" and s.get("progress")]
    assert reports, seen
    assert all(0 < p <= 1 and m == f"{round(p * 4)}/4 steps" for p, m in reports), reports
    assert seen[-1]["state"] == "done" and seen[-1].get("progress") is None


def test_a_moving_parameter_sends_previews_then_the_full_pictures_when_it_stops(comm):
    from oremda_lab.widget import editor as editor_module
    from oremda_lab.widget._display import binned, encode

    def sent():  # (preview?, width) of every displays update so far
        return [(bool(d["view"].get("preview")), d["view"]["layers"][0]["width"]) for d, _ in comm.updates("displays")]

    def step(sigma):
        rev = e.displays["view"]["revision"]
        e.pipeline.set_param("blur", "sigma", sigma)
        wait_for(lambda: e.displays["view"]["revision"] > rev and e.run["state"] == "done")
        return e.displays["view"]

    with Engine("inline") as engine:
        e = PipelineEditor(BLUR_DISPLAY, engine, comm=comm)
        wait_for(lambda: e.run["state"] == "done")
        time.sleep(editor_module.GESTURE_S)
        assert not step(2.0).get("preview")  # the first change after a pause: full size (256 px)
        preview = step(2.5)  # the same parameter again, at once: it moves
        (layer,) = preview["layers"]
        assert preview["preview"] and (layer["width"], layer["height"], layer["scale"]) == (128, 128, 2)
        wait_for(lambda: not e.displays["view"].get("preview"))  # the hand stopped
        full = e.displays["view"]
        assert full["revision"] > preview["revision"] and full["layers"][0]["width"] == 256
        # The refinement is the exact run result at display size, and the preview its 2 x 2 mean.
        run = engine.run(e.pipeline)
        exact = encode(e.pipeline.nodes["view"], list(run.displays["view"]), 0)["layers"][0]["pixels"]
        assert full["layers"][0]["pixels"] == exact
        grey = np.frombuffer(exact, np.uint8).reshape(256, 256).astype(np.float32)
        shown = np.frombuffer(layer["pixels"], np.uint8).reshape(128, 128)
        assert np.abs(np.rint(binned(grey, 2)) - shown).max() == 0
        # Moving on before the hand stops: no full-size picture in between, one at the end.
        time.sleep(editor_module.GESTURE_S)
        before = len(sent())
        step(3.0), step(3.5), step(4.0)
        wait_for(lambda: not e.displays["view"].get("preview"))
        assert sent()[before:] == [(False, 256), (True, 128), (True, 128), (False, 256)]
        # Another parameter, or an edit of the graph, is not a movement.
        e.pipeline.set_param("blur", "mode", "nearest")
        wait_for(lambda: e.run["state"] == "done" and e.pipeline.nodes["blur"].params["mode"] == "nearest")
        time.sleep(0.05)
        assert not e.displays["view"].get("preview")
        e.close()


def test_previews_average_the_grey_levels_already_sent():
    from oremda_lab.spec.pipeline import Node
    from oremda_lab.widget._display import coarser, encode
    from oremda_lab.worker.sdk import PortValue

    img = np.random.default_rng(1).random((600, 400)).astype(np.float32)
    points = np.array([[10.0, 20.0]], np.float32)
    layers = [PortValue(img, {"kind": "picture"}), PortValue(points, {"kind": "scatter"})]
    payload = encode(Node("v", type="display", display="2D"), layers, 1)
    preview = coarser(payload, 2)
    picture, overlay = preview["layers"]
    assert (picture["width"], picture["height"], picture["scale"]) == (100, 150, 4)  # 600 x 400 -> 300 x 200 -> half
    assert overlay is payload["layers"][1] and preview["preview"] and "preview" not in payload
    sent = np.frombuffer(payload["layers"][0]["pixels"], np.uint8).reshape(300, 200).astype(float)
    mean = sent.reshape(150, 2, 100, 2).mean(axis=(1, 3))
    assert np.abs(np.frombuffer(picture["pixels"], np.uint8).reshape(150, 100) - mean).max() <= 0.5
    assert coarser(payload, 1) is payload
    tiny = encode(Node("v", type="display", display="2D"), [PortValue(img[:40, :40], {"kind": "picture"})], 1)
    assert coarser(tiny, 2) is tiny  # 20 px would show nothing useful
