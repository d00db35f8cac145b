"""The fault matrix: every fault the ``fault`` operator makes, on every runtime.

One parametrized test, fault x runtime. Each row runs the chain ``src -> bad -> after``
plus an independent node ``fine``, with the fault in ``bad``, and checks that

- ``bad`` fails with an error naming the fault, ``after`` is skipped, ``src`` and
  ``fine`` finish (other branches complete);
- no object is left in the session that the cache does not hold, and the next run
  (``bad`` back to ``ok``) works;
- once the engine is closed (or killed, and a new engine started), nothing of its
  session is left: no process (worker, MPI launcher or rank, fork server, operator's
  child, a container's processes), no container, no shared-memory file
  (:func:`leftovers`, one check for every runtime).

Local and inline rows run in a plain ``pytest``; Docker, Podman and MPI rows carry
their markers (CI's containers and MPI steps). ``OREMDA_FAULT_TABLE=observed.json``
records each row's error message (merged over runs);
``python tests/runtime/test_fault_matrix.py observed.json`` prints the Markdown table
of docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_docker import engine_client

from oremda_lab.images.build import ImageBuilder
from oremda_lab.registry import Registry
from oremda_lab.runtime.docker import SESSION_LABEL
from oremda_lab.testing import FAULT_OPERATORS, RuntimeContract, fault_pipeline, stray_objects
from oremda_lab.worker.protocol import AUTHKEY_ENV
from oremda_lab.worker.rank import mpi_shared_files

TABLE_ENV = "OREMDA_FAULT_TABLE"
RUNTIMES = ("local", "inline", "docker", "podman", "mpi")
CONTAINERS = ("docker", "podman")


@dataclass(frozen=True)
class Fault:
    """A row: the faulty node's parameters and the text its error must hold."""

    name: str
    params: dict[str, Any]
    expect: str | None  # None: the node succeeds (the fault is what it leaves behind)
    isolated: bool = True  # needs workers outside the test process (kill, hang, rlimit, children)
    shm: bool = False  # runs with a 64 MiB tmpfs as the shared memory
    status: int | None = None  # the worker's exit status, when it dies
    fed: bool = True  # the faulty node gets an input (else it makes its own array of `size`)


FAULTS = [
    Fault("operator raises", {"mode": "raise"}, "ValueError: asked to raise", isolated=False),
    Fault("sys.exit(3)", {"mode": "exit"}, "operator called sys.exit(3)", isolated=False),
    Fault("SIGKILL of the worker", {"mode": "kill"}, "died", status=-9),
    Fault("segfault", {"mode": "segfault"}, "died", status=-11),
    Fault("hang past the timeout", {"mode": "hang"}, "timeout"),
    Fault("memory blow-up (64 GiB, RLIMIT_AS)", {"mode": "oom"}, "MemoryError"),
    Fault(
        "failure after allocating",
        {"mode": "alloc-raise", "size": 1 << 16},
        "asked to raise after allocating",
        isolated=False,
    ),  # fmt: skip
    Fault("output not a dict", {"mode": "bad-output"}, "not a dict of outputs", isolated=False),
    Fault("meta JSON cannot carry", {"mode": "bad-meta"}, "not JSON serializable", isolated=False),
    Fault("writes to its input", {"mode": "write-input"}, "WRITEABLE", isolated=False),
    Fault(
        "file parameter /dev/zero", {"mode": "read", "file": "/dev/zero"}, "outside the data folder", isolated=False
    ),  # fmt: skip
    Fault(
        "file parameter a symlink to /dev/zero",
        {"mode": "read", "file": "zero-link"},
        "outside the data folder",
        isolated=False,
    ),  # fmt: skip
    Fault("file parameter a FIFO", {"mode": "read", "file": "fifo"}, "is not a regular file", isolated=False),
    Fault(
        "full shared memory (80 MB into 64 MiB)",
        {"size": 10_000_000},
        "shared memory full (needed 76.3 MiB",
        isolated=False,
        shm=True,
        fed=False,
    ),  # fmt: skip
    Fault("operator forks a child", {"mode": "spawn"}, None),
    Fault("operator's child leaves the group (setsid, double fork)", {"mode": "daemon"}, None),
]
KILLED = "engine SIGKILLed mid-run, then a new engine"


def target(runtime: str) -> RuntimeContract:
    """The runtime's contract settings (runtime, options, isolation) as its own test module has them."""
    options = {"mpi": {"ranks": 2, "start_timeout": 60}, **dict.fromkeys(CONTAINERS, {"start_timeout": 60})}
    settings = {"runtime": runtime, "options": options.get(runtime, {}), "isolated": runtime != "inline"}
    return type(f"{runtime}Contract", (RuntimeContract,), settings)()


def marks(runtime: str) -> list[pytest.MarkDecorator]:
    """The runtime's tier marker (none for local and inline: the core step runs those)."""
    return [getattr(pytest.mark, runtime)] if runtime in (*CONTAINERS, "mpi") else []


def rows(faults: list[Fault]) -> list:
    return [
        pytest.param(f, r, marks=marks(r), id=f"{re.sub(r'[^a-z0-9]+', '-', f.name.lower()).strip('-')}-{r}")
        for f in faults
        for r in RUNTIMES
    ]


# -- what a session leaves behind -------------------------------------------------------


@dataclass
class Session:
    """What names one engine's session: its shared-memory folder and its workers' key.

    ``shm`` collects the other shared-memory files its processes were seen to map (an
    MPI library's), which must be gone too.
    """

    path: Path
    authkey: str
    runtime: str
    shm: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, engine) -> Session:
        return cls(engine.arena.path, engine.runtime.authkey.hex(), engine.runtime.name)


def process_state(pid: int) -> str:
    """What this host's /proc says of ``pid`` (for a failure message): state and command line, or gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError as e:
        return f"no such process ({e.strerror})"
    return f"state {state}, not in the session's environment: {cmdline}"


def session_processes(session: Session) -> dict[int, str]:
    """Pid -> command line of every process of ``session``.

    A process belongs to it when its environment holds the session's worker key (workers,
    MPI launchers and ranks, a container's processes, and any child an operator starts:
    children inherit the environment), or its command line or an open file names the
    session folder (fork servers log there). Notes the files they map in ``session.shm``.
    """
    key = f"{AUTHKEY_ENV}={session.authkey}".encode()
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        proc = Path(entry.path)
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
            fds = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # exited, waiting to be reaped
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if (
            key in environ.split(b"\0")
            or str(session.path).encode() in cmdline
            or any(fd.startswith(str(session.path)) for fd in fds)
        ):
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
            session.shm |= mpi_shared_files(entry.name)
    return found


def leftovers(session: Session, within: float = 30.0) -> list[str]:
    """Whatever of ``session`` still exists after up to ``within`` s (processes exit asynchronously)."""
    deadline = time.monotonic() + within
    while True:
        left = [f"process {pid}: {cmd}" for pid, cmd in session_processes(session).items()]
        if session.runtime in CONTAINERS:
            client = engine_client(session.runtime)
            left += [
                f"container {c.name}"
                for c in client.containers.list(all=True, filters={"label": f"{SESSION_LABEL}={session.path}"})
            ]
        left += [f"shared memory {path}" for path in sorted({str(session.path), *session.shm}) if Path(path).exists()]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)  # other processes' exits: no event of ours to wait on


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def observed():
    """(fault, runtime) -> the observed outcome; merged into ``$OREMDA_FAULT_TABLE`` at the end."""
    seen: dict[str, dict[str, str]] = {}
    yield seen
    path = os.environ.get(TABLE_ENV)
    if path and seen:
        table = json.loads(Path(path).read_text()) if Path(path).exists() else {}
        for fault, by_runtime in seen.items():
            table.setdefault(fault, {}).update(by_runtime)
        Path(path).write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")


@pytest.fixture(scope="session")
def images():
    """Build the fault operator's image for each container engine once (as test_docker does)."""
    built = set()

    def ensure(engine: str) -> None:
        if engine not in built:
            builder = ImageBuilder(
                engine_client(engine), engine=engine, registry=Registry([FAULT_OPERATORS]), log=lambda m: None
            )
            builder.build(["fault"])
            built.add(engine)

    return ensure


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A data folder holding a FIFO and a symlink to /dev/zero."""
    folder = tmp_path / "data"
    folder.mkdir()
    os.mkfifo(folder / "fifo")
    (folder / "zero-link").symlink_to("/dev/zero")
    return folder


def prepare(runtime: str, contract: RuntimeContract, isolated: bool, images) -> None:
    if isolated and not contract.isolated:
        pytest.skip("n/a: the inline runtime's workers are threads of this process")
    if runtime in CONTAINERS:
        images(runtime)


# -- the matrix -----------------------------------------------------------------------------


@pytest.mark.parametrize("fault, runtime", rows(FAULTS))
def test_fault(fault: Fault, runtime: str, data: Path, observed, images, request) -> None:
    contract = target(runtime)
    prepare(runtime, contract, fault.isolated, images)
    chain = ({}, fault.params, {}) if fault.fed else (fault.params, {})
    pipeline = fault_pipeline(*chain)
    # Its own tag, so the other branch computes for itself instead of sharing src's cache entry.
    pipeline.add_node("oremda/fault", id="fine", params={"tag": "fine"})
    *src, bad, after = [f"n{i}" for i in range(len(chain))]
    expected = {**dict.fromkeys(src, "done"), bad: "error", after: "skipped", "fine": "done"}
    if fault.shm:
        request.getfixturevalue("small_shm")  # a 64 MiB tmpfs as OREMDA_SHM_DIR
    with contract.make_engine(data) as engine:
        session = Session.of(engine)
        run = engine.run(pipeline)
        statuses = {n: r.status for n, r in run.nodes.items()}
        if fault.expect is None:
            assert run.ok, run.errors
            children = [c for c in session_processes(session).values() if "sleep(3600)" in c]
            child = run.outputs[bad]["out"].meta["child"]  # its pid where it runs (a container has its own)
            assert children, f"the operator's child is not seen as the session's; pid {child}: {process_state(child)}"
            outcome = "node done; the child is seen, and gone after close"
        else:
            error = run.nodes[bad].error
            assert statuses == expected, run.errors
            assert fault.expect in error["message"], error
            if fault.status is not None:
                assert error["exit_status"] == fault.status, error
            outcome = error["message"].splitlines()[0]
        assert not stray_objects(engine)
        session_processes(session)  # notes the shared memory its processes map
        pipeline.set_params(bad, {"mode": "ok", "size": 16})
        rerun = engine.run(pipeline)
        assert rerun.ok, rerun.errors
        assert {n: rerun.nodes[n].status for n in (*src, "fine")} == dict.fromkeys((*src, "fine"), "cached")
    assert leftovers(session) == []
    observed.setdefault(fault.name, {})[runtime] = outcome


def test_a_dead_workers_escaped_children_go_with_it(data: Path) -> None:
    """A worker that dies takes its children that left its group (the engine still runs)."""
    with target("local").make_engine(data) as engine:
        session = Session.of(engine)
        spawned = engine.run(fault_pipeline({"mode": "daemon"}))
        child = spawned.outputs["n0"]["out"].meta["child"]
        assert "sleep(3600)" in session_processes(session).get(child, ""), process_state(child)
        killed = engine.run(fault_pipeline({"mode": "kill"}))  # the same node: the same worker
        assert killed.nodes["n0"].error["exit_status"] == -9
        deadline = time.monotonic() + 30
        while child in session_processes(session) and time.monotonic() < deadline:
            time.sleep(0.05)  # the fork server kills it once it reaps the worker
        assert child not in session_processes(session), process_state(child)
        assert engine.run(fault_pipeline({})).ok


def test_close_sweeps_children_whose_fork_server_was_killed(data: Path) -> None:
    """With its fork server SIGKILLed (the OOM killer, say), a worker's escaped child goes on close."""
    with target("local").make_engine(data) as engine:
        session = Session.of(engine)
        child = engine.run(fault_pipeline({"mode": "daemon"})).outputs["n0"]["out"].meta["child"]
        (server,) = engine.runtime._servers.values()
        server.kill()  # its workers die by their parent-death signal; their orphans go to init
        server.wait()
        assert child in session_processes(session), process_state(child)
    assert leftovers(session) == []


HUNG_ENGINE = """
import sys, threading
from oremda_lab import Engine
from oremda_lab.registry import Registry
from oremda_lab.worker.rank import mpi_shared_files
from oremda_lab.testing import FAULT_OPERATORS, fault_pipeline
runtime, data, options, first = sys.argv[1], sys.argv[2], __import__("json").loads(sys.argv[3]), sys.argv[4]
report = open(int(sys.argv[5]), "w")  # a pipe of its own: inline workers print to stdout too
engine = Engine(runtime, data, registry=Registry([FAULT_OPERATORS]), **options)
for mode in first.split(","):  # the worker's children: one in its group, one that left it
    assert engine.run(fault_pipeline({"mode": mode})).ok
running = threading.Event()
engine.subscribe(lambda e: running.set() if (e.node, e.state) == ("n0", "running") else None)
engine.submit(fault_pipeline({"mode": "hang"}))  # the worker with a child, now in a task that never ends
assert running.wait(120)
print("SESSION", engine.arena.path, engine.runtime.authkey.hex(), file=report, flush=True)
threading.Event().wait()
"""


@pytest.mark.parametrize("runtime", [pytest.param(r, marks=marks(r), id=r) for r in RUNTIMES])
def test_killed_engine(runtime: str, data: Path, observed, images) -> None:
    """SIGKILL an engine whose worker hangs (with children, one out of its group); a new engine finds nothing stale."""
    contract = target(runtime)
    prepare(runtime, contract, False, images)
    options = {**contract.options, "timeout": 600}
    spawn = "spawn,daemon" if contract.isolated else "ok"
    read, write = os.pipe()
    engine_process = subprocess.Popen(
        # Inline workers are threads: a child of theirs would be the killed engine's, beyond any runtime.
        [sys.executable, "-c", HUNG_ENGINE, runtime, str(data), json.dumps(options), spawn, str(write)],
        stdout=subprocess.DEVNULL,
        pass_fds=(write,),
    )
    os.close(write)
    report = os.fdopen(read)
    try:
        line = next((line.split() for line in report if line.startswith("SESSION ")), [])
        assert len(line) == 3, "the engine did not start its hanging run"
        session = Session(Path(line[1]), line[2], runtime)
        if contract.isolated:
            assert session_processes(session), "the hanging worker is not seen as the session's"
    finally:
        report.close()
        engine_process.send_signal(signal.SIGKILL)
        engine_process.wait()
    with contract.make_engine(data) as engine:  # starting sweeps what the dead engine left
        assert engine.run(fault_pipeline({}, {})).ok
        left = leftovers(session)
    assert left == []
    observed.setdefault(KILLED, {})[runtime] = (
        "nothing of the killed session left once the next engine started; it runs"
    )


# -- the table for docs/reliability.md ----------------------------------------------------------


def table(observed: dict[str, dict[str, str]]) -> str:
    """The observed outcomes as a Markdown table, rows in matrix order."""
    names = [f.name for f in FAULTS] + [KILLED]
    lines = ["| fault | " + " | ".join(RUNTIMES) + " |", "|---" * (len(RUNTIMES) + 1) + "|"]
    for name in names:
        cells = [observed.get(name, {}).get(r, "n/a" if _not_applicable(name, r) else "") for r in RUNTIMES]
        lines.append(f"| {name} | " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def _not_applicable(name: str, runtime: str) -> bool:
    return runtime == "inline" and any(f.name == name and f.isolated for f in FAULTS)


if __name__ == "__main__":
    print(table(json.loads(Path(sys.argv[1]).read_text())))
