"""Partial results (issue "Scale" item 4): displays fill in while a node runs as partitions.

A generated 4D ``.npy`` (32 scan rows) under a small memory budget runs as 8 partitions
on 2 local workers. The data-parallel operator here (``gated``: per pattern its sum,
joined by concatenate; the sum of all patterns, joined by sum) waits, in the partitions
of rows ``>= gate_row``, for the gate file, which the test opens only once a partial
display has arrived: the order of events, not the clock, proves that partial displays
come before the final one. The reference is numpy on the whole array.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from oremda_lab.engine import Engine, partitions
from oremda_lab.engine.events import NodeEvent
from oremda_lab.registry import Registry
from oremda_lab.runtime.base import Task
from oremda_lab.spec.pipeline import Pipeline
from oremda_lab.testing import FAULT_OPERATORS, fault_pipeline, stray_objects, write_operator

SCAN, DETECTOR = (32, 8), 32
GATE_ROW = 12  # partitions 0-2 (rows 0-11) run at once; the others wait for the gate
BUDGET = 256 << 10  # 16 KiB chunks on each of 2 workers: one scan row; partitions of 4 rows

GATED = {
    "name": "gated",
    "version": "1.0.0",
    "description": "Test operator: each pattern's sum (image) and the sum of all patterns (total); "
    "a chunk holding rows >= gate_row waits for the file `gate` first (then fails if `fail`)",
    "entrypoint": "run",
    "ports": {
        "input": {"data": {"type": "data"}},
        "output": {"image": {"type": "data"}, "total": {"type": "data"}},
    },
    "params": {
        "gate": {"type": "string", "default": ""},
        "gate_row": {"type": "integer", "default": 0},
        "fail": {"type": "bool", "default": False},
        "tag": {"type": "string", "default": ""},
        "pause": {"type": "number", "default": 0.0},
    },
    "parallel": {"split": {"port": "data", "axis": 0}, "join": {"image": "concatenate", "total": "sum"}},
}
CODE = """
import time
from pathlib import Path

import numpy as np

from oremda_lab.worker.sdk import cancelled, operator


@operator
def gated(inputs, params):
    data = inputs["data"].data
    rows = data[:, 0, 0, 0]  # the generated data carry their scan row here
    pause = time.monotonic() + params["pause"]
    while time.monotonic() < pause and not cancelled():
        time.sleep(0.01)
    if params["gate"] and rows.max() >= params["gate_row"]:
        deadline = time.monotonic() + 120
        while not Path(params["gate"]).exists():
            if cancelled():
                raise RuntimeError("cancelled while waiting for the gate")
            if time.monotonic() > deadline:
                raise TimeoutError("the gate did not open")
            time.sleep(0.01)
        if params["fail"]:
            raise ValueError(f"row {rows.max()} is broken")
    data = data.astype(np.float64)
    return {"image": data.sum(axis=(-2, -1)), "total": data.sum(axis=(0, 1))}
"""


def dataset() -> np.ndarray:
    """Patterns of random counts; pixel (0, 0) of each holds its scan row (what ``gated`` gates on)."""
    data = np.random.default_rng(7).integers(1, 50, (*SCAN, DETECTOR, DETECTOR), dtype=np.uint16)
    data[..., 0, 0] = np.arange(SCAN[0], dtype=np.uint16)[:, None]
    return data


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OREMDA_PARALLEL_WORKERS", "2")
    np.save(tmp_path / "scan.npy", dataset())
    write_operator(tmp_path / "operators", GATED, CODE)
    return tmp_path


def pipeline(folder: Path, gate: str = "gate", fail: bool = False) -> Pipeline:
    """read -> gated; gated.image -> picture -> view (2D); gated.total -> picture -> pattern (2D)."""
    p = Pipeline(catalog=Registry([folder / "operators"]))
    p.add_node("oremda/npy_reader", id="read", params={"filename": "scan.npy"})
    p.add_node("oremda/gated", id="g", params={"gate": str(folder / gate), "gate_row": GATE_ROW, "fail": fail})
    p.connect("read", "data", "g", "data")
    for port, display in (("image", "view"), ("total", "pattern")):
        p.add_node("oremda/picture", id=f"{display}_pic")
        p.add_node(display="2D", id=display)
        p.connect("g", port, f"{display}_pic", "in")
        p.connect(f"{display}_pic", "out", display, "in")
    return p


def engine_on(folder: Path, runtime: str = "local") -> Engine:
    """Local: 2 workers take 8 partitions of 4 rows. MPI: 2 ranks read 2 blocks of 16 rows, one block at a time."""
    options = {"ranks": 2, "start_timeout": 60} if runtime == "mpi" else {}
    return Engine(runtime, folder, shm_bytes=BUDGET, registry=Registry([folder / "operators"]), **options)


def record(engine: Engine, on_partial: Callable[[NodeEvent], None] = lambda event: None) -> list:
    """Every event with its layers' data copied (a preview's views live as long as the event)."""
    events: list = []

    def hear(event: NodeEvent) -> None:
        events.append((event, [np.array(layer.data) for layer in event.layers or ()]))
        if event.partial:
            on_partial(event)

    engine.subscribe(hear)
    return events


def leftovers(engine: Engine) -> tuple[set[str], list[str]]:
    """Objects no cache entry holds, and cancel markers left in the session."""
    markers = engine.arena.path / "cancel"
    return stray_objects(engine), sorted(p.name for p in markers.iterdir()) if markers.exists() else []


def test_a_large_node_runs_as_more_partitions_than_workers(folder):
    with engine_on(folder) as engine:
        run = engine.run(pipeline(folder, gate=""))
        assert run.ok, run.errors
        np.testing.assert_array_equal(run.outputs["g"]["image"].data, dataset().astype(np.float64).sum(axis=(-2, -1)))
        spec = engine.registry.get("gated")
        task = Task("t", "g", spec, {}, {"data": run.nodes["read"].outputs["data"]})
        assert partitions.row_ranges(engine.runtime, task) == [(i, i + 4) for i in range(0, 32, 4)]
        # Two workers took the eight partitions in turn.
        assert engine.runtime.serves("g~p1", spec) and not engine.runtime.serves("g~p2", spec)


def test_partial_displays_come_before_the_final_one_and_show_the_partitions_done(folder):
    data = dataset().astype(np.float64)
    image, total = data.sum(axis=(-2, -1)), data.sum(axis=(0, 1))
    with engine_on(folder) as engine:
        assert engine.run(pipeline(folder, gate="")).ok  # warm workers
        events = record(engine, on_partial=lambda event: (folder / "gate").touch())
        run = engine.run(pipeline(folder))
        assert run.ok, run.errors
        np.testing.assert_array_equal(run.outputs["g"]["image"].data, image)  # the final: the whole array's
        np.testing.assert_allclose(run.outputs["g"]["total"].data, total)
        assert leftovers(engine) == (set(), [])  # every preview's objects freed
    partial = [(i, e, layers[0]) for i, (e, layers) in enumerate(events) if e.partial]
    final = {e.node: (i, layers[0]) for i, (e, layers) in enumerate(events) if e.layers and not e.partial}
    assert partial, "no partial display arrived"
    assert {e.node for _, e, _ in partial} == {"view", "pattern"}
    for i, e, _ in partial:
        assert (e.run_id, e.state) == (run.id, "done") and e.message.endswith("/8 partitions")
        assert i < final[e.node][0], "a partial display after the final one"
    np.testing.assert_array_equal(final["view"][1], image)
    np.testing.assert_allclose(final["pattern"][1], total)
    previews: dict[float, dict[str, np.ndarray]] = {}  # progress -> display -> what it showed
    for _, e, shown in partial:
        previews.setdefault(e.progress, {})[e.node] = shown
    for progress, shown in previews.items():
        done = np.all(shown["view"] == image, axis=1)
        assert np.all(shown["view"][~done] == 0), "rows not done yet are zero"
        assert done.sum() == round(progress * 8) * 4 > 0, "whole partitions of 4 rows"
        np.testing.assert_allclose(shown["pattern"], data[done].sum(axis=(0, 1)))  # the sum of those done
    first = previews[min(previews)]["view"]
    assert not first[GATE_ROW:].any(), "the first preview came while the gated partitions waited"


def test_a_newer_run_stops_the_previews(folder):
    with engine_on(folder) as engine:
        warm = engine.run(pipeline(folder, gate=""))  # warm workers
        assert warm.ok, (warm.errors, warm.waiting)
        heard = threading.Event()
        events = record(engine, on_partial=lambda event: heard.set())
        first = engine.submit(pipeline(folder))  # its gate never opens
        assert heard.wait(60), [e.error for e, _ in events if e.error]
        newer = engine.submit(pipeline(folder, gate=""))
        old = first.result(60)
        assert old.superseded and old.nodes["g"].status == "error"  # its waiting partitions were cancelled
        partials_then = [e for e, _ in events if e.partial]
        run = newer.result(60)
        assert run.ok, run.errors
        assert [e for e, _ in events if e.partial and e.run_id == old.id] == partials_then
        assert leftovers(engine) == (set(), [])
    order = [(e.run_id, e.node, e.state, e.partial) for e, _ in events]
    stopped = order.index((old.id, None, "superseded", False))
    assert not any(run_id == old.id and partial for run_id, _, _, partial in order[stopped:])


def test_a_node_failing_after_partial_displays_is_its_error_and_leaks_nothing(folder):
    with engine_on(folder) as engine:
        assert engine.run(pipeline(folder, gate="")).ok  # warm workers
        events = record(engine, on_partial=lambda event: (folder / "gate").touch())
        run = engine.run(pipeline(folder, fail=True))
        assert any(e.partial for e, _ in events)
        assert run.nodes["g"].status == "error" and "ValueError: row" in run.errors["g"]["message"], run.errors
        assert {n: run.nodes[n].status for n in ("view", "pattern")} == {"view": "skipped", "pattern": "skipped"}
        assert not any(e.layers and not e.partial for e, _ in events)  # no final display
        assert leftovers(engine) == (set(), [])


def test_a_pipeline_without_partitions_has_no_partial_displays(tmp_path):
    # A slow node (longer than the partial interval) before a display: still no preview.
    p = fault_pipeline({"mode": "sleep", "seconds": 2 * partitions.PARTIAL_INTERVAL})
    p.add_node("oremda/plot", id="plot")
    p.add_node(display="1D", id="view")
    p.connect("n0", "out", "plot", "x")
    p.connect("n0", "out", "plot", "y")
    p.connect("plot", "out", "view", "in")
    with Engine("inline", tmp_path, registry=Registry([FAULT_OPERATORS])) as engine:
        events = record(engine)
        assert engine.run(p).ok
    assert [e.node for e, _ in events if e.layers] == ["view"]
    assert not any(e.partial for e, _ in events)


@pytest.mark.mpi
def test_mpi_ranks_read_blocks_one_after_the_other_and_preview_each(folder):
    """On MPI the ranks split each block of rows: after each block the displays get a preview.

    A preview's own nodes run on the ranks too, after the block that is reading: previews
    lag a block behind, and the node's end stops the last (so no gate here: 64 scan rows
    in 4 blocks of 16, each chunk of one row slowed to 0.15 s, a block ~1.2 s).
    """
    data = np.concatenate([dataset()] * 2)
    np.save(folder / "scan64.npy", data)
    image = data.astype(np.float64).sum(axis=(-2, -1))
    slow = pipeline(folder, gate="")
    slow.set_param("read", "filename", "scan64.npy")
    with engine_on(folder, "mpi") as engine:
        warm = engine.run(slow)  # warm ranks
        assert warm.ok, warm.errors
        task = Task("t", "g", engine.registry.get("gated"), {}, {"data": warm.nodes["read"].outputs["data"]})
        assert partitions.row_ranges(engine.runtime, task) == [(i, i + 16) for i in range(0, 64, 16)]
        assert partitions.row_ranges(engine.runtime, task, previews=False) == [(0, 64)]  # nothing shows it: one task
        slow.set_param("g", "pause", 0.15)
        events = record(engine)
        run = engine.run(slow)
        assert run.ok, run.errors
        np.testing.assert_array_equal(run.outputs["g"]["image"].data, image)
        assert leftovers(engine) == (set(), [])
    partial = [(i, e, layers[0]) for i, (e, layers) in enumerate(events) if e.partial and e.node == "view"]
    final = next(i for i, (e, layers) in enumerate(events) if e.node == "view" and e.layers and not e.partial)
    assert partial and all(i < final for i, _, _ in partial), "previews, all before the final display"
    for _, e, shown in partial:
        done = np.all(shown == image, axis=1)
        assert np.all(shown[~done] == 0) and done.sum() == round(e.progress * 4) * 16 > 0, "whole blocks"
        assert e.message.endswith("/4 partitions")


@pytest.mark.mpi
def test_a_newer_run_cancels_the_blocks_of_an_mpi_run(folder):
    with engine_on(folder, "mpi") as engine:
        assert engine.run(pipeline(folder, gate="")).ok  # warm ranks
        slow = pipeline(folder, gate="")
        slow.set_param("g", "pause", 5.0)  # 16 chunks per rank: 80 s unless cancelled
        heard = threading.Event()
        engine.subscribe(lambda e: e.node == "g" and e.state == "running" and heard.set())
        first = engine.submit(slow)
        assert heard.wait(60)
        newer = engine.submit(pipeline(folder, gate=""))
        old = first.result(30)
        assert old.superseded and old.nodes["g"].status == "error"
        assert newer.result(60).ok
        assert leftovers(engine) == (set(), [])
