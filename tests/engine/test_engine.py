import asyncio
import json

import numpy as np
import pytest
import tifffile

from oremda_lab import Engine, Pipeline, PipelineError
from oremda_lab.registry import Registry
from oremda_lab.testing import FAULT_OPERATORS, fault_pipeline, seen


@pytest.fixture
def engine(tmp_path):
    with Engine("inline", tmp_path, registry=Registry([FAULT_OPERATORS])) as e:
        yield e


def test_events_follow_each_node(engine):
    events = []
    engine.subscribe(events.append)
    pipeline = fault_pipeline({}, {})
    engine.run(pipeline)
    states = [(e.node, e.state) for e in events]
    assert states.index(("n0", "done")) < states.index(("n1", "running"))
    assert ("n1", "done") in states and states[-1] == (None, "finished")
    assert any(e.node is None and e.state == "starting" and "2 worker(s)" in e.message for e in events)
    engine.run(pipeline)
    assert [(e.node, e.state) for e in events[-3:]] == [("n0", "cached"), ("n1", "cached"), (None, "finished")]


def test_newest_submission_wins(engine, tmp_path):
    # n0 waits for the file "gate": the first run is certainly in flight while newer ones arrive.
    pipeline = fault_pipeline({"mode": "wait", "seconds": 60, "tag": "0"}, {})
    started = seen(engine, "n0")
    first = engine.submit(pipeline)
    assert started.wait(60)
    futures = []
    for i in range(1, 6):
        pipeline.set_param("n0", "tag", str(i))
        futures.append(engine.submit(pipeline))
    (tmp_path / "gate").touch()
    last = futures[-1].result(60)
    assert last.ok and last.pipeline.nodes["n0"].params["tag"] == "5"
    assert first.result().superseded
    # The task in flight finished into the cache; nothing after it was started.
    assert {n: r.status for n, r in first.result().nodes.items()} == {"n0": "done", "n1": "queued"}
    assert all(f.result().superseded and not f.result().nodes for f in futures[:-1])


def test_submit_does_not_block_and_can_be_awaited(engine, tmp_path):
    future = engine.submit(fault_pipeline({"mode": "wait", "seconds": 60}))
    assert not future.done()  # the operator waits for the gate, which only opens now
    (tmp_path / "gate").touch()

    async def wait():
        return await future

    assert asyncio.run(wait()).ok


def test_an_integer_given_as_a_float_reaches_the_operator_as_an_int(engine):
    # JSON has one number type: size 4.0 is valid, and numpy's ones(4.0) would raise.
    run = engine.run(fault_pipeline({"size": 4.0}))
    assert run.ok, run.errors
    assert run.outputs["n0"]["out"].data.shape == (4,)


def test_subscriber_errors_do_not_stop_the_engine(engine):
    engine.subscribe(lambda event: 1 / 0)
    assert engine.run(fault_pipeline({})).ok


def test_cache_keeps_recent_results_for_slider_back_and_forth(engine):
    pipeline = fault_pipeline({"tag": "a"}, {})
    engine.run(pipeline)
    pipeline.set_param("n0", "tag", "b")
    engine.run(pipeline)
    pipeline.set_param("n0", "tag", "a")
    assert {r.status for r in engine.run(pipeline).nodes.values()} == {"cached"}


def test_evicted_entries_return_memory(tmp_path):
    with Engine("inline", tmp_path, registry=Registry([FAULT_OPERATORS]), cache_bytes=0) as engine:
        pipeline = fault_pipeline({"tag": "a"})
        engine.run(pipeline)
        pipeline.set_param("n0", "tag", "b")
        run = engine.run(pipeline)
        assert engine.arena.live() == [run.nodes["n0"].outputs["out"]["ref"]["name"]]


def test_run_record_and_provenance(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.arange(64, dtype=np.uint16).reshape(8, 8))
    pipeline = Pipeline.from_json(
        {
            "nodes": [
                {"id": "src", "image": "oremda/tiff_reader", "params": {"filename": "a.tif"}},
                {"id": "blur", "image": "oremda/gaussian_blur", "params": {"sigma": 1}},
            ],
            "edges": [{"type": "data", "from": {"id": "src", "port": "out"}, "to": {"id": "blur", "port": "image"}}],
        }
    )
    with Engine("inline", tmp_path) as engine:
        run = engine.run(pipeline)
        record = json.loads(json.dumps(run.record()))
        assert record["nodes"]["blur"]["status"] == "done"
        assert record["provenance"]["inputs"]["src.filename"].startswith("sha256:")
        assert record["provenance"]["operators"]["gaussian_blur"]["digest"].startswith("sha256:")
        exported = run.export_pipeline()
        assert exported["provenance"]["nodes"]["blur"]["digest"] == engine.registry.get("gaussian_blur").digest
        assert engine.run(Pipeline.from_json(exported)).ok  # the pin holds
        # A pinned node whose operator changed is refused before anything runs.
        exported["provenance"]["nodes"]["blur"]["digest"] = "sha256:0000"
        with pytest.raises(PipelineError, match="blur: pinned to gaussian_blur sha256:0000"):
            engine.submit(Pipeline.from_json(exported))
        # An export from before per-node pins only warns.
        del exported["provenance"]["nodes"]
        exported["provenance"]["operators"]["gaussian_blur"]["digest"] = "sha256:0000"
        with pytest.warns(UserWarning, match="gaussian_blur changed since this pipeline was exported"):
            engine.submit(Pipeline.from_json(exported)).result()
        # a file change on disk is a new input: the reader runs again
        tifffile.imwrite(tmp_path / "a.tif", np.ones((8, 8), dtype=np.uint16))
        assert engine.run(pipeline).nodes["src"].status == "done"


def test_closed_engine_refuses_work(tmp_path):
    engine = Engine("inline", tmp_path)
    engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        engine.submit(fault_pipeline({}))


def test_unknown_runtime_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="unknown runtime 'nope'"):
        Engine("nope", tmp_path)


@pytest.mark.timeout(120)  # the task hangs for an hour: only a close that does not wait ends in time
def test_close_does_not_wait_for_a_running_task(tmp_path):
    engine = Engine("local", tmp_path, registry=Registry([FAULT_OPERATORS]))
    started = seen(engine, "n0")
    future = engine.submit(fault_pipeline({"mode": "hang"}))
    assert started.wait(60)
    engine.close()
    run = future.result(60)
    assert run.nodes["n0"].status == "error"


def test_a_pinned_environment_that_changed_is_refused(tmp_path):
    with Engine("local", tmp_path, registry=Registry([FAULT_OPERATORS])) as engine:
        exported = engine.run(fault_pipeline({})).export_pipeline()
        # fault needs nothing beyond numpy and pyarrow: the kernel's environment runs it.
        assert exported["provenance"]["nodes"]["n0"]["environment"]["id"] == "kernel"
        assert engine.run(Pipeline.from_json(exported, catalog=engine.registry)).ok
        exported["provenance"]["nodes"]["n0"]["environment"]["id"] = "venv:0000"
        with pytest.raises(PipelineError, match=r"^n0: pinned to environment venv:0000, but fault would run in kernel"):
            engine.run(Pipeline.from_json(exported, catalog=engine.registry))


@pytest.mark.parametrize("runtime", ["local", "inline"])
def test_a_node_id_reused_for_another_operator_runs_the_new_operator(tmp_path, runtime):
    """Two pipelines in one engine may give one node id different operators (a notebook loads both)."""
    image = np.arange(64 * 64, dtype="float32").reshape(64, 64)
    tifffile.imwrite(tmp_path / "a.tif", image)

    def pipeline(image_name, params):
        return Pipeline.from_json({
            "nodes": [
                {"id": "src", "image": "oremda/tiff_reader", "params": {"filename": "a.tif"}},
                {"id": "op", "image": image_name, "params": params},
            ],
            "edges": [{"type": "data", "from": {"id": "src", "port": "out"}, "to": {"id": "op", "port": "image"}}],
        })  # fmt: skip

    with Engine(runtime, tmp_path) as engine:
        assert engine.run(pipeline("oremda/gaussian_blur", {"sigma": 2})).ok
        run = engine.run(pipeline("oremda/crop2d", {"bounds": [0, 10, 0, 5]}))
        assert run.ok, run.errors
        np.testing.assert_array_equal(run.outputs["op"]["image"].data, image[0:5, 0:10])
