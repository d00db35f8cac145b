"""Test helpers for operator authors and runtime implementers.

- :func:`run_operator` runs one operator on given inputs through the real worker
  code path (shared memory, Arrow tensors, control messages), without a runtime.
- :class:`RuntimeContract` is the test class every runtime passes (see ``tests/runtime``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from oremda_lab.dataplane import lazy
from oremda_lab.dataplane.arena import Arena
from oremda_lab.dataplane.refs import ObjectRef
from oremda_lab.engine import Engine
from oremda_lab.registry import Registry, default_registry
from oremda_lab.spec.pipeline import Pipeline
from oremda_lab.worker import protocol
from oremda_lab.worker.main import Worker, load_operator
from oremda_lab.worker.sdk import PortValue


def free_port() -> int:
    """A TCP port on the loopback interface that nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_operator(
    name: str,
    inputs: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    *,
    registry: Registry | None = None,
    data_dir: str | Path | None = None,
) -> dict[str, PortValue]:
    """Run operator ``name`` once; returns its outputs (copied out of shared memory).

    ``inputs`` values may be PortValue, ndarray, bytes or a LazyArray; a lazy output
    comes back as its LazyArray. Parameters get their
    defaults. Raises ``RuntimeError`` with the operator's error and traceback.
    """
    spec = (registry or default_registry()).get(name)
    with Arena.create() as arena:
        _, func = load_operator(spec.path)
        worker = Worker(spec, func, Arena.attach(arena.path), data_dir=str(data_dir) if data_dir else None)
        wire = {}
        for port, value in (inputs or {}).items():
            value = value if isinstance(value, PortValue) else PortValue(value)
            if isinstance(value.data, lazy.LazyArray):
                wire[port] = lazy.to_wire(value.data, value.meta)
                continue
            ref = arena.put(value.data, f"input--{port}") if value.data is not None else None
            wire[port] = {"ref": ref.to_dict() if ref else None, "meta": value.meta}
        msg = protocol.decode(
            protocol.encode(protocol.RUN, task="t", params=spec.resolved_params(params or {}), inputs=wire)
        )
        reply = protocol.decode(worker.handle(msg))
        if reply["op"] == protocol.ERROR:
            raise RuntimeError(f"{name}: {reply['error']}\n{reply['traceback']}")
        out = {}
        for port, v in reply["outputs"].items():
            data = arena.get(ObjectRef.from_dict(v["ref"])) if v["ref"] else lazy.from_wire(v)
            out[port] = PortValue(np.array(data) if isinstance(data, np.ndarray) else data, v["meta"])
        return out


def write_operator(folder: Path, description: dict[str, Any], code: str) -> Path:
    """Create an operator folder (for tests that need a temporary operator)."""
    folder = Path(folder) / description["name"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "operator.json").write_text(json.dumps(description))
    (folder / "run.py").write_text(code)
    return folder


FAULT_OPERATORS = Path(__file__).parent / "testing_operators"


def fault_pipeline(*chain: dict[str, Any]) -> Pipeline:
    """A chain of ``fault`` nodes named n0, n1, ...; each dict gives that node's params."""
    nodes = [{"id": f"n{i}", "image": "oremda/fault", "params": params} for i, params in enumerate(chain)]
    edges = [
        {"type": "data", "from": {"id": f"n{i}", "port": "out"}, "to": {"id": f"n{i + 1}", "port": "in"}}
        for i in range(len(chain) - 1)
    ]
    return Pipeline.from_json({"nodes": nodes, "edges": edges}, catalog=Registry([FAULT_OPERATORS]))


def gated_displays(seconds: float = 120) -> Pipeline:
    """Two 1D displays: ``fast`` (``f`` -> ``fast_plot``) and ``slow`` (``s`` -> ``slow_plot``).

    ``f`` emits 4 ones; ``s`` waits for the data file ``gate`` (failing after ``seconds``).
    A test of progressive displays opens the gate once ``fast`` has been shown, so the
    order of events, not the clock, proves ``fast`` was shown before the run ended.
    """
    pipeline = Pipeline(catalog=Registry([FAULT_OPERATORS]))
    for source, display, params in (("f", "fast", {"size": 4}), ("s", "slow", {"mode": "wait", "seconds": seconds})):
        pipeline.add_node("oremda/fault", id=source, params=params)
        pipeline.add_node("oremda/plot", id=f"{display}_plot")
        pipeline.add_node(display="1D", id=display)
        pipeline.connect(source, "out", f"{display}_plot", "x")
        pipeline.connect(source, "out", f"{display}_plot", "y")
        pipeline.connect(f"{display}_plot", "out", display, "in")
    return pipeline


@contextlib.contextmanager
def small_tmpfs(size: str = "64m") -> Iterator[Path]:
    """A fresh tmpfs of ``size`` (root only), unmounted and removed after.

    Mounted on a new folder in the temp dir: a short path, since control sockets live
    in the session folders made there. Raises ``PermissionError`` where mounting is
    not allowed.
    """
    folder = Path(tempfile.mkdtemp(prefix="oremda-tmpfs-"))
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
        )
        if mounted.returncode != 0:
            raise PermissionError(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
        try:
            yield folder
        finally:
            subprocess.run(["umount", "-l", str(folder)], check=True)
    finally:
        folder.rmdir()


def shm_folder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A 64 MiB tmpfs as ``OREMDA_SHM_DIR`` (skips where mounting is not allowed).

    The body of the ``small_shm`` fixture, for test modules (import :data:`small_shm` into a
    ``conftest.py``) and for :class:`RuntimeContract`.
    """
    try:
        with small_tmpfs() as folder:
            monkeypatch.setenv("OREMDA_SHM_DIR", str(folder))
            yield folder
    except PermissionError as e:
        pytest.skip(str(e))


small_shm = pytest.fixture(shm_folder, name="small_shm")


def seen(engine: Engine, node: str, state: str = "running", *, progress: bool = False) -> threading.Event:
    """A flag set once ``engine`` emits ``state`` for ``node`` (with a progress value if ``progress``).

    Subscribe before submitting; ``flag.wait(timeout)`` then tells that a run reached that point.
    """
    flag = threading.Event()

    def hear(event: Any) -> None:
        if event.node == node and event.state == state and (not progress or event.progress is not None):
            flag.set()

    engine.subscribe(hear)
    return flag


def supersede_midway(
    engine: Engine, pipeline: Pipeline, node: str, change: tuple[str, str, Any], timeout: float = 60
) -> tuple[Any, Any, list[Any]]:
    """Submit ``pipeline``; once ``node`` reports progress, submit it again with ``change`` applied.

    ``change`` is ``(node, param, value)``. Returns the first run (superseded, if the
    engine cancelled it), the newer run's future and every event heard meanwhile.
    """
    events: list[Any] = []
    engine.subscribe(events.append)
    started = seen(engine, node, progress=True)
    first = engine.submit(pipeline)
    assert started.wait(timeout), [e for e in events if e.error]
    newer = pipeline.copy()
    newer.set_param(*change)
    second = engine.submit(newer)
    return first.result(timeout * 2), second, events


def stray_objects(engine: Engine) -> set[str]:
    """Objects in the engine's session that no cache entry holds (a leak)."""
    return set(engine.arena.live()) - set(engine.cache.holders)


class RuntimeContract:
    """What every runtime must do; subclass it in ``tests/runtime/test_<name>.py``.

    Set ``runtime`` (and ``options`` for its constructor). Runtimes whose workers
    are threads of the test process set ``isolated = False``, which skips the tests
    that kill a worker.
    """

    runtime = "local"
    options: dict[str, Any] = {}
    isolated = True
    task_timeout = 3.0

    @pytest.fixture
    def engine(self, tmp_path: Path) -> Iterator[Engine]:
        """An engine on this runtime that sees the fault operator; checks cleanup on close."""
        with self.make_engine(tmp_path) as engine:
            yield engine

    @contextlib.contextmanager
    def make_engine(self, data_dir: Path, **options: Any) -> Iterator[Engine]:
        """An engine as the ``engine`` fixture makes it (``options`` add to the class's)."""
        options = {**self.options, **options}
        engine = Engine(self.runtime, data_dir, registry=self.operators(data_dir), timeout=self.task_timeout, **options)
        session = engine.arena.path
        try:
            yield engine
        finally:
            engine.close()
        assert not session.exists(), "the session's shared memory outlived the engine"

    def operators(self, data_dir: Path) -> Registry:
        """The operators the engine sees: the fault operator (a subclass may give it another stack)."""
        return Registry([FAULT_OPERATORS])

    @pytest.fixture
    def small_shm(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
        """A 64 MiB tmpfs as ``OREMDA_SHM_DIR`` (see :func:`shm_folder`)."""
        yield from shm_folder(monkeypatch)

    def test_runs_a_chain(self, engine: Engine) -> None:
        run = engine.run(fault_pipeline({}, {}, {}))
        assert run.ok, run.errors
        np.testing.assert_array_equal(run.outputs["n2"]["out"].data, np.full(16, 3.0))

    def test_outputs_are_zero_copy_views(self, engine: Engine) -> None:
        data = engine.run(fault_pipeline({})).outputs["n0"]["out"].data
        assert not data.flags.owndata and not data.flags.writeable

    def test_rerun_is_cached(self, engine: Engine) -> None:
        pipeline = fault_pipeline({}, {})
        engine.run(pipeline)
        run = engine.run(pipeline)
        assert [r.status for r in run.nodes.values()] == ["cached", "cached"]

    def test_param_change_reruns_only_descendants(self, engine: Engine) -> None:
        pipeline = fault_pipeline({}, {}, {})
        engine.run(pipeline)
        pipeline.set_param("n1", "tag", "changed")
        run = engine.run(pipeline)
        assert {n: r.status for n, r in run.nodes.items()} == {"n0": "cached", "n1": "done", "n2": "done"}

    def test_workers_stay_warm(self, engine: Engine) -> None:
        pipeline = fault_pipeline({})
        first = engine.run(pipeline).outputs["n0"]["out"].meta["pid"]
        pipeline.set_param("n0", "tag", "again")
        assert engine.run(pipeline).outputs["n0"]["out"].meta["pid"] == first

    def test_independent_branches_run_concurrently(self, engine: Engine) -> None:
        pipeline = fault_pipeline({"mode": "sleep", "seconds": 0.0})
        pipeline.add_node("oremda/fault", id="other", params={"mode": "sleep", "seconds": 0.0})
        engine.run(pipeline)  # warm both workers
        pipeline.set_params("n0", {"seconds": 1.0})
        pipeline.set_params("other", {"seconds": 1.0})
        run = engine.run(pipeline)
        assert run.ok, run.errors
        # Each task notes when it entered and left the operator: one after the other never overlaps.
        a, b = (run.outputs[n]["out"].meta for n in ("n0", "other"))
        assert a["entered"] < b["left"] and b["entered"] < a["left"], "the two branches ran one after the other"

    def test_operator_exception_is_a_node_error(self, engine: Engine) -> None:
        run = engine.run(fault_pipeline({"mode": "raise"}, {}))
        assert run.nodes["n0"].status == "error"
        assert "ValueError: asked to raise" in run.nodes["n0"].error["message"]
        assert "Traceback" in run.nodes["n0"].error["traceback"]
        assert run.nodes["n1"].status == "skipped"

    def test_sys_exit_is_a_node_error(self, engine: Engine) -> None:
        run = engine.run(fault_pipeline({"mode": "exit"}))
        assert "sys.exit(3)" in run.nodes["n0"].error["message"]

    def test_failure_spares_other_branches(self, engine: Engine) -> None:
        pipeline = fault_pipeline({"mode": "raise"})
        pipeline.add_node("oremda/fault", id="fine")
        run = engine.run(pipeline)
        assert run.nodes["fine"].status == "done" and run.nodes["n0"].status == "error"

    @pytest.mark.parametrize("mode, status", [("kill", -9), ("segfault", -11)])
    def test_dead_worker_is_a_node_error_and_restarts(self, engine: Engine, mode: str, status: int) -> None:
        if not self.isolated:
            pytest.skip("workers share the test process")
        pipeline = fault_pipeline({"mode": mode}, {})
        run = engine.run(pipeline)
        error = run.nodes["n0"].error
        assert "died" in error["message"] and error["exit_status"] == status
        assert "fault operator: mode=" + mode in error["log_tail"]
        assert not stray_objects(engine)
        pipeline.set_param("n0", "mode", "ok")
        assert engine.run(pipeline).ok

    def test_hung_worker_times_out(self, engine: Engine) -> None:
        if not self.isolated:
            pytest.skip("a thread cannot be killed")
        pipeline = fault_pipeline({"mode": "hang"})  # an hour: only the engine's timeout ends it in time
        run = engine.run(pipeline)
        assert "timeout" in run.nodes["n0"].error["message"]
        pipeline.set_param("n0", "mode", "ok")
        assert engine.run(pipeline).ok

    def test_failed_task_leaves_no_objects(self, engine: Engine) -> None:
        pipeline = fault_pipeline({}, {"mode": "alloc-raise", "size": 1 << 16})
        run = engine.run(pipeline)
        assert "asked to raise after allocating" in run.nodes["n1"].error["message"]
        assert engine.arena.live() == [run.nodes["n0"].outputs["out"]["ref"]["name"]]
        assert not stray_objects(engine)

    def test_unserialisable_meta_is_a_node_error(self, engine: Engine) -> None:
        pipeline = fault_pipeline({"mode": "bad-meta"})
        run = engine.run(pipeline)
        assert "not JSON serializable" in run.nodes["n0"].error["message"]  # an error, not "worker died"
        assert engine.arena.live() == [] and not stray_objects(engine)
        pipeline.set_param("n0", "mode", "ok")
        assert engine.run(pipeline).ok

    def test_an_operator_cannot_write_to_its_input(self, engine: Engine) -> None:
        pipeline = fault_pipeline({}, {"mode": "write-input"})
        run = engine.run(pipeline)
        assert "WRITEABLE" in run.nodes["n1"].error["message"]
        pipeline.set_param("n1", "mode", "ok")
        run = engine.run(pipeline)
        assert run.nodes["n0"].status == "cached"
        np.testing.assert_array_equal(run.outputs["n0"]["out"].data, np.ones(16))
        np.testing.assert_array_equal(run.outputs["n1"]["out"].data, np.full(16, 2.0))

    def test_full_shared_memory_is_a_node_error(self, tmp_path: Path, small_shm: Path) -> None:
        with self.make_engine(tmp_path) as engine:
            assert engine.arena.path.parent == small_shm
            pipeline = fault_pipeline({"size": 10_000_000})  # 80 MB of float64 in 64 MiB
            pipeline.add_node("oremda/fault", id="fine")
            run = engine.run(pipeline)
            assert "shared memory full (needed 76.3 MiB, free" in run.nodes["n0"].error["message"]
            assert run.nodes["fine"].status == "done"
            assert not stray_objects(engine) and os.listdir(engine.arena.pool) == []
            pipeline.set_param("n0", "size", 64)
            assert engine.run(pipeline).ok
