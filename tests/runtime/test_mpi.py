"""The MPI runtime: the runtime contract, data-parallel joins, the multi-node data path, failures.

Needs mpi4py and an ``mpiexec`` (``pip install mpi4py mpich``); all tests carry the
``mpi`` marker, off in a plain ``pytest``.
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from oremda_lab.dataplane.arena import Arena
from oremda_lab.dataplane.refs import ObjectRef
from oremda_lab.engine import Engine
from oremda_lab.registry import Registry
from oremda_lab.runtime import make_runtime
from oremda_lab.runtime.base import NodeFailure, Task, process_alive
from oremda_lab.runtime.local import LocalRuntime
from oremda_lab.spec.pipeline import Pipeline
from oremda_lab.testing import FAULT_OPERATORS, RuntimeContract, write_operator
from oremda_lab.worker.rank import mpi_shared_files

pytestmark = pytest.mark.mpi


class TestMPIRuntime(RuntimeContract):
    runtime = "mpi"
    options = {"ranks": 2, "start_timeout": 60}


# -- helpers ----------------------------------------------------------------------

PARTS = """
import os
import numpy as np
from oremda_lab.worker.sdk import PortValue, operator

@operator
def parts(inputs, params):
    x = np.asarray(inputs["x"].data, np.float64)
    if params.get("fail_on") is not None and x.size and x.flat[0] >= params["fail_on"]:
        raise RuntimeError("bad slice")
    w = inputs["w"].data if "w" in inputs else None
    w = 1.0 if w is None else np.asarray(w).sum()
    return {
        "rows": x * w,                            # concatenate along the split axis
        "total": x.sum(axis=params["axis"]) * w,  # sum over slices
        "peak": x.max(axis=params["axis"]),       # max over slices
        "n": PortValue(np.array([x.shape[params["axis"]]]), {"pid": os.getpid()}),  # stack: one per rank
    }
"""


def parts_operator(folder: Path, axis: int = 0) -> Path:
    description = {
        "name": "parts",
        "entrypoint": "run",
        "ports": {
            "input": {"x": {"type": "data"}, "w": {"type": "data", "required": False}},
            "output": {p: {"type": "data"} for p in ("rows", "total", "peak", "n")},
        },
        "params": {"axis": {"type": "integer", "default": axis}, "fail_on": {"type": "number"}},
        "parallel": {
            "split": {"port": "x", "axis": axis},
            "join": {"rows": "concatenate", "total": "sum", "peak": {"method": "max"}, "n": "stack"},
        },
    }
    return write_operator(folder, description, PARTS)


def run_task(runtime, arena, spec, inputs, params=None, node="node", extra=None):
    wire = {}
    for port, value in inputs.items():
        ref = arena.put(value, f"in-{uuid.uuid4().hex[:6]}--{port}")
        wire[port] = {"ref": ref.to_dict(), "meta": {"port": port}}
    failures = runtime.start({node: spec})
    assert not failures, failures
    task = Task(
        f"t{uuid.uuid4().hex[:6]}", node, spec, spec.resolved_params(params or {}), wire, slot=node, extra=extra or {}
    )
    result = runtime.submit(task).result(timeout=120)
    return {p: (np.array(arena.get(ObjectRef.from_dict(v["ref"]))), v["meta"]) for p, v in result.outputs.items()}


@pytest.fixture
def arena():
    with Arena.create() as arena:
        yield arena
    assert not arena.path.exists()


def mpi_host_pids():
    """Rank processes of this test process's sessions (other processes may run MPI jobs meanwhile)."""
    pattern = f"oremda_lab.worker.rank .*--session [^ ]*/oremda-{os.getpid()}-"
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def mpi_shm_files():
    """MPICH's shared-memory files that no process maps (others' live jobs map theirs)."""
    files = {str(p) for p in Path("/dev/shm").glob("mpich_shm_*")} if Path("/dev/shm").is_dir() else set()
    if files:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            files -= mpi_shared_files(pid)
    return {Path(f).name for f in files}


@pytest.fixture(autouse=True)
def no_leftover_ranks():
    before, files = mpi_host_pids(), mpi_shm_files()
    yield
    deadline = time.monotonic() + 5
    while mpi_host_pids() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not mpi_host_pids() - before, "MPI ranks outlived their runtime"
    assert not mpi_shm_files() - files, "a killed MPI job left its shared memory in /dev/shm"


# -- data-parallel operators --------------------------------------------------------


@pytest.mark.parametrize("ranks", [1, 2, 4])
@pytest.mark.parametrize("axis", [0, 1])
def test_joins_equal_the_unsplit_local_result(tmp_path, arena, ranks, axis):
    spec = Registry([parts_operator(tmp_path, axis)]).get("parts")
    x = np.random.default_rng(1).random((11, 7, 3)).astype(np.float32)
    w = np.array([0.5, 1.5])
    with LocalRuntime(arena) as local:
        expected = run_task(local, arena, spec, {"x": x, "w": w})
    with make_runtime("mpi", arena, ranks=ranks, start_timeout=60) as runtime:
        got = run_task(runtime, arena, spec, {"x": x, "w": w})
    for port in ("rows", "total", "peak"):
        np.testing.assert_allclose(got[port][0], expected[port][0], rtol=1e-6, err_msg=port)
        assert got[port][0].dtype == expected[port][0].dtype
    # "stack" keeps one entry per rank (upstream's default join)
    assert got["n"][0].shape == (ranks, 1) and got["n"][0].sum() == x.shape[axis]
    pids = {m["pid"] for _, m in got.values() if "pid" in m}
    assert len(pids) == 1


def test_remote_ranks_get_slices_by_mpi(tmp_path, arena):
    """Ranks 1-3 act as if on another node: no shared memory, TCP control, MPI Send/Recv data."""
    spec = Registry([parts_operator(tmp_path)]).get("parts")
    # 8 MB: beyond MPI's eager limit, so sends complete only once received (rendezvous)
    x = np.arange(1000 * 128 * 8, dtype=np.float64).reshape(1000, 128, 8)
    with make_runtime("mpi", arena, ranks=4, remote_ranks=[1, 2, 3], start_timeout=60, timeout=60) as runtime:
        got = run_task(runtime, arena, spec, {"x": x, "w": np.ones(1)})
        assert [runtime._jobs[""].local[r] for r in range(4)] == [True, False, False, False]
        # a node placed only on remote ranks: rank 0 ships the data and takes the result back
        far = run_task(runtime, arena, spec, {"x": x, "w": np.ones(1)}, node="far", extra={"mpi": {"ranks": [2, 3]}})
    for result in (got, far):
        np.testing.assert_array_equal(result["rows"][0], x)
        np.testing.assert_array_equal(result["total"][0], x.sum(axis=0))
        np.testing.assert_array_equal(result["peak"][0], x.max(axis=0))
    assert far["n"][0].shape == (2, 1)


def test_placement_from_pipeline_json(tmp_path, arena):
    folder = parts_operator(tmp_path)
    registry = Registry([folder])
    pipeline = Pipeline.from_json(
        {
            "nodes": [
                {"id": "p", "image": "oremda/parts", "params": {}, "mpi": {"ranks": [1, 2]}},
                {
                    "id": "q",
                    "image": "oremda/parts",
                    "params": {},
                    "run_locations": [0, 2],
                    "parallel": True,
                    "parallel_output_to_join": "total",
                    "parallel_output_join_method": "sum",
                },
            ],
            "edges": [],
        },
        catalog=registry,
    )
    spec = registry.get("parts")
    x = np.random.default_rng(2).random((6, 5))
    with make_runtime("mpi", arena, ranks=3, start_timeout=60) as runtime:
        p, q = (run_task(runtime, arena, spec, {"x": x}, node=n, extra=pipeline.nodes[n].extra) for n in "pq")
    assert p["n"][0].shape == (2, 1) and q["n"][0].shape == (2, 1)
    np.testing.assert_allclose(q["total"][0], x.sum(axis=0))


def test_error_on_one_rank_fails_the_task_without_a_hang(tmp_path, arena):
    spec = Registry([parts_operator(tmp_path)]).get("parts")
    x = np.arange(8, dtype=np.float64)  # rank 1 of 2 gets 4..7
    with make_runtime("mpi", arena, ranks=2, start_timeout=60, timeout=20) as runtime:
        before = set(arena.live())
        started = time.monotonic()
        with pytest.raises(NodeFailure, match="bad slice"):
            run_task(runtime, arena, spec, {"x": x}, {"fail_on": 4})
        assert time.monotonic() - started < 10
        assert {n for n in arena.live() if "--rows" in n or "--total" in n} <= before
        # the job lives on and runs the next task
        got = run_task(runtime, arena, spec, {"x": x})
    np.testing.assert_array_equal(got["rows"][0], x)


ECHO = """
import numpy as np
from oremda_lab.worker.sdk import PortValue, operator, output_array

@operator
def echo(inputs, params, state):
    state["runs"] = state.get("runs", 0) + 1
    made = output_array(inputs["x"].data.shape, inputs["x"].data.dtype)
    made[...] = inputs["x"].data * 2
    return {"same": inputs["x"], "made": made, "runs": PortValue(None, {"runs": state["runs"]})}
"""


def test_ranks_invoke_operators_as_workers_do(tmp_path, arena):
    """One invoke for worker processes and ranks: state from operator.json, pass-through, output_array."""
    description = {
        "name": "echo", "entrypoint": "run", "stateful": True,  # stateful only in operator.json
        "ports": {"input": {"x": {"type": "data"}}, "output": {p: {"type": "data"} for p in ("same", "made", "runs")}},
    }  # fmt: skip
    spec = Registry([write_operator(tmp_path, description, ECHO)]).get("echo")
    x = arena.put(np.arange(6.0), "src--x")
    seen = {}
    for name, runtime in (("local", LocalRuntime(arena)), ("mpi", make_runtime("mpi", arena, ranks=2))):
        with runtime:
            assert not runtime.start({"node": spec})
            for _ in range(2):
                wire = {"x": {"ref": x.to_dict(), "meta": {}}}
                task = Task(f"t{uuid.uuid4().hex[:6]}", "node", spec, {}, wire, slot="node")
                outputs = runtime.submit(task).result(timeout=60).outputs
            seen[name] = outputs
            made = ObjectRef.from_dict(outputs["made"]["ref"])
            np.testing.assert_array_equal(arena.get(made), np.arange(6.0) * 2)
    for outputs in seen.values():
        assert outputs["same"]["ref"]["name"] == "src--x"  # passed on by reference, no copy
        assert outputs["made"]["ref"]["name"].endswith("--alloc0")  # computed in shared memory, stored as is
        assert outputs["runs"]["meta"] == {"runs": 2}  # the node's state kept between runs


# -- failures ----------------------------------------------------------------------


def test_launcher_not_found_is_a_clear_error(arena):
    with make_runtime("mpi", arena, ranks=2, launcher=["no-such-mpiexec", "-n"]) as runtime:
        started = time.monotonic()
        failures = runtime.start({"n0": Registry([FAULT_OPERATORS]).get("fault")})
    assert time.monotonic() - started < 5
    assert "launcher 'no-such-mpiexec' not found" in failures["n0"].message


def test_job_that_fails_to_start_is_a_node_failure(arena):
    # the launcher runs, but the ranks die before saying HELLO
    with make_runtime("mpi", arena, ranks=2, python="/bin/false", start_timeout=30) as runtime:
        started = time.monotonic()
        failures = runtime.start({"n0": Registry([FAULT_OPERATORS]).get("fault")})
    assert time.monotonic() - started < 20
    assert "exited during start-up" in failures["n0"].message


def test_rank_killed_from_outside_is_a_node_failure(tmp_path):
    pipeline = Pipeline.from_json(
        {"nodes": [{"id": "n0", "image": "oremda/fault", "params": {"mode": "sleep", "seconds": 30}}], "edges": []},
        catalog=Registry([FAULT_OPERATORS]),
    )
    engine = Engine("mpi", tmp_path, registry=Registry([FAULT_OPERATORS]), ranks=2, timeout=60, start_timeout=60)
    try:
        future = engine.submit(pipeline)
        runtime = engine.runtime
        deadline = time.monotonic() + 30
        while "" not in runtime._jobs or len(runtime._jobs[""].ranks) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.0)
        job = runtime._jobs[""]
        os.kill(job.ranks[job.assigned.get("n0", 0)]["pid"], signal.SIGKILL)
        started = time.monotonic()
        run = future.result(timeout=30)
        assert time.monotonic() - started < 15
        error = run.nodes["n0"].error
        assert "died" in error["message"] and error["exit_status"] == -9, error
    finally:
        session = engine.arena.path
        engine.close()
    assert not session.exists()


def test_sigterm_to_every_rank_leaves_no_mpi_shared_memory(arena):
    """What Slurm does when a job ends (scancel, time limit, the hub stopping a server): SIGTERM to all at once."""
    with make_runtime("mpi", arena, ranks=2, start_timeout=60) as runtime:
        assert not runtime.start({"n": Registry([FAULT_OPERATORS]).get("fault")})
        job = runtime._jobs[""]
        files = [Path(f) for f in job.shared_files if Path(f).name.startswith("mpich_shm_")]
        assert files and all(f.exists() for f in files)
        for rank in job.ranks.values():
            os.kill(rank["pid"], signal.SIGTERM)
        deadline = time.monotonic() + 10
        while any(process_alive(r) for r in job.ranks.values()):
            assert time.monotonic() < deadline, "a rank outlived SIGTERM"
            time.sleep(0.05)
        # before the runtime ends the job (whose kill would remove them too)
        assert not any(f.exists() for f in files), "MPI's shared memory outlived the ranks"


def test_reused_shared_memory_is_read_afresh(tmp_path, arena):
    """Ranks keep the last task's input mappings; a pooled file's next object must not be mistaken for it."""
    spec = Registry([parts_operator(tmp_path)]).get("parts")
    with make_runtime("mpi", arena, ranks=2, start_timeout=60) as runtime:
        assert not runtime.start({"node": spec})
        results = []
        for value in (1.0, 2.0, 3.0):
            ref = arena.put(np.full((8, 4), value), f"in-{value}--x")
            task = Task(
                f"t{uuid.uuid4().hex[:6]}", "node", spec, spec.resolved_params({}), {"x": {"ref": ref.to_dict()}}
            )
            for _ in range(2):  # the same input twice: the second run reuses the mapping
                outputs = runtime.submit(task).result(timeout=60).outputs
                results.append(np.array(arena.get(ObjectRef.from_dict(outputs["total"]["ref"]))))
                for v in outputs.values():
                    arena.free(ObjectRef.from_dict(v["ref"]))
            arena.free(ref)  # back to the pool: the next value likely reuses this very file
    assert [r[0] for r in results] == [8.0, 8.0, 16.0, 16.0, 24.0, 24.0]


def test_bad_split_is_a_clear_error(tmp_path, arena):
    spec = Registry([parts_operator(tmp_path)]).get("parts")
    with make_runtime("mpi", arena, ranks=2, remote_ranks=[1], start_timeout=60, timeout=20) as runtime:
        started = time.monotonic()
        with pytest.raises(NodeFailure, match="cannot split input 'x'"):
            run_task(runtime, arena, spec, {"x": np.ones((4, 3))}, extra={"mpi": {"split": {"port": "x", "axis": 2}}})
        assert time.monotonic() - started < 10
        assert run_task(runtime, arena, spec, {"x": np.ones((4, 3))})["total"][0].tolist() == [4.0, 4.0, 4.0]


def test_remote_outputs_move_rank_to_rank(tmp_path, arena):
    """Nodes on ranks off the kernel's machine pass data to each other directly.

    P runs on rank 2 and Q on rank 3 (both "remote"); R on ranks 2 and 3 reads P's
    output from rank 2 and Q's from rank 3, in both directions at once and beyond the
    eager limit, so a wrong send/receive order would deadlock.
    """
    spec = Registry([parts_operator(tmp_path)]).get("parts")
    x = np.random.default_rng(3).random((1000, 128, 8))
    ref = arena.put(x, "src--x")
    with make_runtime("mpi", arena, ranks=4, remote_ranks=[2, 3], start_timeout=60, timeout=60) as runtime:
        placement = {"P": [2], "Q": [3], "R": [2, 3]}
        assert not runtime.start({n: spec for n in "PQR"})

        def run(node, inputs):
            extra = {"mpi": {"ranks": placement[node]}}
            task = Task(
                f"t{uuid.uuid4().hex[:6]}", node, spec, spec.resolved_params({}), inputs, slot=node, extra=extra
            )
            return task, runtime.submit(task).result(timeout=60).outputs

        _, p = run("P", {"x": {"ref": ref.to_dict()}})
        _, q = run("Q", {"x": {"ref": ref.to_dict()}})
        job = runtime._jobs[""]
        assert job.resident[p["rows"]["ref"]["name"]] == 2
        assert job.resident[q["total"]["ref"]["name"]] == 3
        task, r = run("R", {"x": p["rows"], "w": q["total"]})
        assert runtime.plan(task, job)["holders"] == {"x": 2, "w": 3}
        got = np.array(arena.get(ObjectRef.from_dict(r["rows"]["ref"])))
    np.testing.assert_allclose(got, x * x.sum(axis=0).sum())


def test_remote_ranks_keep_only_keep_bytes(tmp_path, arena):
    spec = Registry([parts_operator(tmp_path)]).get("parts")
    x = np.ones((64, 64))
    with make_runtime("mpi", arena, ranks=2, remote_ranks=[1], keep_bytes=40_000, start_timeout=60) as runtime:
        kept = []
        for _ in range(3):  # 32 kB rows each: the newest stays, older ones are dropped
            out = run_task(runtime, arena, spec, {"x": x}, node="far", extra={"mpi": {"ranks": [1]}})
            assert out["rows"][0].sum() == x.size
            kept.append({n for n in runtime._jobs[""].resident if n.endswith("--rows")})
    assert all(len(k) == 1 for k in kept) and len(set.union(*kept)) == 3


def test_the_kernel_never_imports_mpi4py(tmp_path):
    """Importing mpi4py calls MPI_Init, which fails on some login nodes: only ranks may."""
    code = (
        "import sys\n"
        "from oremda_lab.engine import Engine\n"
        "from oremda_lab.registry import Registry\n"
        "from oremda_lab.testing import FAULT_OPERATORS, fault_pipeline\n"
        "with Engine('mpi', sys.argv[1], registry=Registry([FAULT_OPERATORS]), ranks=2) as engine:\n"
        "    assert engine.run(fault_pipeline({})).ok\n"
        "print('mpi4py' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
