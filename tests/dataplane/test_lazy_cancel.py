"""C2 for any operator: sdk.report_progress reaches the engine's events, sdk.cancelled() stops a superseded task."""

from __future__ import annotations

import threading

import pytest

from oremda_lab.engine import Engine
from oremda_lab.registry import Registry
from oremda_lab.spec.pipeline import Pipeline
from oremda_lab.testing import stray_objects, write_operator
from oremda_lab.worker import sdk

SLOW = """
import time

from oremda_lab.worker.sdk import cancelled, operator, report_progress


@operator
def slow(inputs, params):
    steps = int(params["steps"])
    for i in range(steps):
        if cancelled():
            raise RuntimeError(f"cancelled at step {i}")
        time.sleep(0.05)
        report_progress((i + 1) / steps, f"{i + 1}/{steps} steps")
    return {"out": float(steps)}
"""

DESCRIPTION = {
    "name": "slow",
    "version": "1.0.0",
    "entrypoint": "run",
    "ports": {"output": {"out": {"type": "data"}}},
    "params": {"steps": {"type": "integer", "default": 10}},
}


@pytest.fixture
def registry(tmp_path):
    write_operator(tmp_path / "ops", DESCRIPTION, SLOW)
    return Registry([tmp_path / "ops"])


def one_node(registry, steps: int) -> Pipeline:
    return Pipeline.from_json({"nodes": [{"id": "s", "image": "oremda/slow", "params": {"steps": steps}}], "edges": []},
                              catalog=registry)  # fmt: skip


@pytest.mark.parametrize("runtime", ["local", "inline"])
def test_progress_reports_become_running_events(tmp_path, registry, runtime):
    events = []
    with Engine(runtime, tmp_path, registry=registry) as engine:
        engine.subscribe(events.append)
        assert engine.run(one_node(registry, 5)).ok
    progress = [(e.progress, e.message) for e in events if e.node == "s" and e.progress is not None]
    assert progress and progress[-1] == (1.0, "5/5 steps")
    assert [p for p, _ in progress] == sorted(p for p, _ in progress)


def test_a_newer_run_cancels_the_task_it_supersedes(tmp_path, registry):
    started = threading.Event()
    with Engine("local", tmp_path, registry=registry) as engine:
        engine.subscribe(lambda e: e.node == "s" and e.progress is not None and started.set())
        first = engine.submit(one_node(registry, 2000))  # 100 s unless cancelled
        assert started.wait(60)
        second = engine.submit(one_node(registry, 3))
        old = first.result(60)
        assert old.superseded and old.nodes["s"].status == "error"
        assert "cancelled at step" in old.nodes["s"].error["message"]
        assert second.result(60).ok
        assert not list((engine.arena.path / "cancel").iterdir())
        assert not stray_objects(engine)


def test_outside_a_worker_the_hooks_do_nothing():
    assert sdk.cancelled() is False
    sdk.report_progress(0.5, "half")  # no task: nothing to tell
