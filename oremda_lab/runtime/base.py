"""The runtime interface, and the bookkeeping every runtime shares.

State and policy
----------------
A runtime hosts warm workers, one per *slot*. The engine uses one slot per pipeline
node (so independent branches run in parallel even when they use the same operator,
and a stateful operator keeps state per node); plain ``start(specs)`` uses one slot per
operator. It owns:

* a control listener (a Unix socket in the session's ``run/`` folder; containers see
  it through the session mount) that workers connect to and greet with HELLO;
* ``_workers``: slot -> :class:`_Worker` (its handle, connection and a lock: a worker
  runs one task at a time);
* timeouts: ``start_timeout`` for a worker to say HELLO, ``timeout`` per task;
* ``_environments``: slot -> what its last worker reported in HELLO about its Python
  environment (for provenance), plus the environment's id.

Preparing a worker (creating its environment, pulling its image) happens in
:meth:`launch`, before the HELLO deadline starts, and may take minutes: adapters report
it with :meth:`progress`, which the engine turns into ``preparing`` node events.

Every wait is bounded and watches the worker: a worker that exits, is killed or
overruns its timeout is killed, reaped and forgotten, and the task fails with a
:class:`NodeFailure` carrying exit status and log tail. The next ``start`` launches
a fresh worker. Adapters (local processes, Docker, Apptainer, MPI) only say how to
launch a worker and give a :class:`WorkerHandle` back; the hub here owns the
listener, the HELLO handshake, the bounded waits, the one kill escalation
(:func:`end_group`: SIGTERM, a grace period, SIGKILL) and the one liveness check of a
process (:func:`process_alive`, a look at ``/proc``). A handle that is ``hosted``
(an operator loaded by the ranks of an MPI job) says no HELLO of its own: the adapter
that launched it runs its tasks over the job's connections.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, Listener
from pathlib import Path
from typing import Any, ClassVar

from oremda_lab.dataplane.arena import Arena, owner_alive, process_start_time, signal_group
from oremda_lab.spec.operator import OperatorSpec
from oremda_lab.worker import protocol
from oremda_lab.worker.sdk import DATA_DIR_ENV

DEFAULT_TIMEOUT = 600.0
DEFAULT_START_TIMEOUT = 120.0
TERM_GRACE = 2.0  # seconds between SIGTERM and SIGKILL when a worker is ended
_KILL_WAIT = 10.0  # how long a SIGKILLed group may take to be reaped
_POLL = 0.1  # how often a waiting thread checks that its worker still lives


def process_alive(record: Mapping[str, Any]) -> bool:
    """Whether the process a record (``{"pid", "started"}``, an ``owner_record``) names runs.

    The one liveness check of a process: the pid's start time in ``/proc`` must match
    (a reused pid is another process), and a zombie (exited, not yet reaped) is dead.
    """
    if not owner_alive(dict(record)):
        return False
    try:
        state = Path(f"/proc/{int(record['pid'])}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return process_start_time(int(record["pid"])) is None  # no /proc here: owner_alive asked the pid
    return state not in ("Z", "X")


def end_group(leader: Mapping[str, Any], alive: Callable[[], bool], grace: float = TERM_GRACE) -> None:
    """End the process group ``leader`` (an ``owner_record``) leads: the one kill escalation.

    SIGTERM, up to ``grace`` seconds for ``alive()`` to turn false, then SIGKILL and a
    bounded wait for it to be reaped. A pid reused by another process is never signalled.
    """
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, _KILL_WAIT)):
        if not alive():
            return
        signal_group(dict(leader), sig)
        deadline = time.monotonic() + wait
        while alive() and time.monotonic() < deadline:
            time.sleep(0.01)


class NodeFailure(Exception):
    """A task failed: the operator raised, or its worker died, hung or never started."""

    def __init__(self, message: str, *, traceback: str = "", log_tail: str = "", exit_status: int | None = None):
        super().__init__(message)
        self.message = message
        self.traceback = traceback
        self.log_tail = log_tail
        self.exit_status = exit_status

    def to_dict(self) -> dict[str, Any]:
        """Plain form for events and run records."""
        return {
            "message": self.message,
            "traceback": self.traceback,
            "log_tail": self.log_tail,
            "exit_status": self.exit_status,
        }


@dataclass
class Task:
    """One execution of one node: params and input wire values (refs + meta).

    ``slot`` names the worker that runs it (default: one per operator); ``extra`` holds
    the node's own JSON fields this version does not interpret (e.g. MPI placement);
    ``on_progress(fraction, message)`` hears the worker's PROGRESS reports (C2).
    """

    id: str
    node: str
    spec: OperatorSpec
    params: dict[str, Any]
    inputs: dict[str, dict[str, Any]]
    slot: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    on_progress: Callable[[float, str], None] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.slot = self.slot or self.spec.name


@dataclass
class TaskResult:
    """Output wire values of a task and the operator's own compute time."""

    outputs: dict[str, dict[str, Any]]
    duration_s: float


class WorkerHandle(ABC):
    """A launched worker, whatever hosts it (process, container, instance, rank)."""

    log: Path | None = None  # the file its output goes to, where it has one
    #: True when the worker is hosted by processes the adapter drives (MPI ranks): it
    #: says no HELLO of its own, and the adapter's ``submit`` runs its tasks.
    hosted: ClassVar[bool] = False

    @abstractmethod
    def alive(self) -> bool:
        """Whether the worker is still running."""

    @abstractmethod
    def exit_status(self) -> int | None:
        """Exit status once it ended (negative: killed by that signal), else None."""

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the worker printed (by default, of :attr:`log`)."""
        if self.log is None:
            return ""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    @abstractmethod
    def kill(self) -> None:
        """Stop it: terminate, bounded wait, kill, reap. Idempotent."""


@dataclass
class _Worker:
    slot: str
    spec: OperatorSpec
    id: str
    handle: WorkerHandle = None  # type: ignore[assignment]  # set right after launch
    hello: threading.Event = field(default_factory=threading.Event)
    conn: Connection | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def ready(self) -> bool:
        """Whether it said HELLO (or needs none: a hosted worker)."""
        return self.conn is not None or self.handle.hosted


def _same(a: OperatorSpec, b: OperatorSpec) -> bool:
    """Whether a worker of ``a`` can serve ``b``: same description and code, same image."""
    return (a.digest, a.image) == (b.digest, b.image)


def wait_for_message(
    conn: Connection, handle: WorkerHandle, deadline: float, on_progress: Callable[[float, str], None] | None = None
) -> dict[str, Any] | str:
    """The next message on ``conn``, or ``"died"`` or ``"timeout"``: never a hang.

    Checks every ``_POLL`` seconds that the worker still lives and the deadline holds.
    PROGRESS messages mid-task go to ``on_progress(fraction, message)`` and the wait goes on.
    """
    while True:
        try:
            if conn.poll(_POLL):
                msg = protocol.decode(conn.recv_bytes())
                if msg.get("op") != protocol.PROGRESS:
                    return msg
                if on_progress is not None:
                    on_progress(float(msg.get("fraction", 0.0)), str(msg.get("message", "")))
                continue
        except (EOFError, OSError):
            return "died"  # the stream ended
        if not handle.alive():
            return "died"
        if time.monotonic() > deadline:
            return "timeout"


def _run_message(task: Task) -> bytes:
    return protocol.encode(protocol.RUN, task=task.id, params=task.params, inputs=task.inputs)


class Runtime(ABC):
    """Hosts warm operator workers and runs tasks on them.

    Subclasses implement :meth:`launch` only. The four calls the engine uses are
    ``start(specs)``, ``submit(task)``, ``alive(name)`` and ``stop()``.
    """

    name: ClassVar[str] = "base"
    # Operator images this runtime can start, read from their labels (None: no images).
    catalog: Any = None
    # Whether the runtime splits a data-parallel operator's task itself (MPI ranks); else
    # the engine runs its lazy input's partitions on several workers (engine/partitions.py).
    splits_parallel: ClassVar[bool] = False
    # Whether :meth:`pull` can fetch an operator image a pipeline names (runtimes with images).
    can_pull: ClassVar[bool] = False

    def __init__(
        self,
        arena: Arena,
        *,
        data_dir: str | Path | None = None,
        timeout: float | None = None,
        start_timeout: float | None = None,
    ):
        self.arena = arena
        self.data_dir = Path(data_dir).resolve() if data_dir else Path.cwd()
        self.timeout = timeout or DEFAULT_TIMEOUT
        self.start_timeout = start_timeout or DEFAULT_START_TIMEOUT
        self.authkey = secrets.token_bytes(16)
        self.address = str(arena.path / "run" / f"ctl-{uuid.uuid4().hex[:8]}.sock")
        self._listener = Listener(self.address, family="AF_UNIX", authkey=self.authkey)
        os.chmod(self.address, 0o777)  # workers in containers run as another user
        self._listeners = [self._listener]
        self._workers: dict[str, _Worker] = {}
        self._by_id: dict[str, _Worker] = {}
        self._environments: dict[str, dict[str, Any]] = {}
        #: ``callback(slot, message)`` hears :meth:`progress` (the engine sets it).
        self.progress_callback: Callable[[str, str], None] | None = None
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix=f"oremda-{self.name}")
        self._stopped = False
        self._acceptor = threading.Thread(
            target=self._accept, args=(self._listener,), name="oremda-accept", daemon=True
        )
        self._acceptor.start()

    # -- what adapters provide -----------------------------------------------------

    @abstractmethod
    def launch(self, spec: OperatorSpec, worker_id: str) -> WorkerHandle:
        """Start a worker for ``spec`` that runs :meth:`worker_command` and connects back."""

    def listen_tcp(self, host: str) -> tuple[str, int]:
        """Accept workers over TCP on ``host`` too (workers on other machines); the address to give them.

        The same handshake as over the session's Unix socket: the runtime's key, then HELLO.
        """
        listener = Listener((host, 0), family="AF_INET", authkey=self.authkey)
        self._listeners.append(listener)
        threading.Thread(target=self._accept, args=(listener,), name="oremda-accept-tcp", daemon=True).start()
        return listener.address

    def worker_args(self, worker_id: str, operator_dir: str) -> list[str]:
        """Arguments of ``python -m oremda_lab.worker`` (paths as seen inside the worker)."""
        return [
            "--operator", operator_dir,
            "--connect", self.address,
            "--session", str(self.arena.path),
            "--worker", worker_id,
        ]  # fmt: skip

    def worker_command(self, worker_id: str, operator_dir: str, python: str = sys.executable) -> list[str]:
        """The worker's whole command line."""
        return [python, "-m", "oremda_lab.worker", *self.worker_args(worker_id, operator_dir)]

    def image_digest(self, spec: OperatorSpec) -> str:
        """What identifies the operator's code exactly (container runtimes: the image digest)."""
        return spec.digest

    def image_pin(self, spec: OperatorSpec) -> dict[str, str]:
        """What names ``spec``'s image exactly (``image``, ``image_id``); empty without images."""
        return {}

    def pull(self, ref: str, progress: Callable[[str], None] | None = None) -> Any:
        """Fetch image ``ref`` (``progress(message)`` hears how it goes); LookupError says why not.

        Only a runtime whose :attr:`can_pull` is true has images to fetch.
        """
        raise LookupError(f"the {self.name} runtime runs no images; it cannot pull {ref}")

    def environment_id(self, spec: OperatorSpec) -> str:
        """What names the environment ``spec``'s worker runs in: ``"kernel"``, ``"venv:<key>"``, ``"image:<id>"``.

        By default a runtime whose digest is an image's (containers) names that image.
        """
        digest = self.image_digest(spec)
        return "kernel" if digest == spec.digest else f"image:{digest}"

    def worker_env(self, data_dir: str | None = None) -> dict[str, str]:
        """Environment the worker needs (authentication key, data folder, a headless plot backend).

        ``MPLBACKEND`` is set because workers inherit the kernel's environment, where
        Jupyter names its inline backend: a worker's own matplotlib may not have it.
        """
        return {
            protocol.AUTHKEY_ENV: self.authkey.hex(),
            DATA_DIR_ENV: data_dir or str(self.data_dir),
            "MPLBACKEND": "Agg",
        }

    # -- the interface the engine uses ---------------------------------------------

    def start(self, slots: Mapping[str, OperatorSpec] | Iterable[OperatorSpec]) -> dict[str, NodeFailure]:
        """Make sure a warm worker runs in each slot, launching missing ones in parallel.

        ``slots`` maps slot names to specs; a plain list of specs means one slot per
        operator name. Returns the slots that failed to start, with why.
        """
        wanted = dict(slots) if isinstance(slots, Mapping) else {s.name: s for s in slots}
        with self._lock:
            changed = [
                w for slot, w in self._workers.items()
                if slot in wanted and (not _same(w.spec, wanted[slot]) or not w.handle.alive())
            ]  # fmt: skip
        for worker in changed:  # the slot now holds another operator (or changed code, or another image), or it died
            self._forget(worker)
        with self._lock:
            new = [(slot, spec) for slot, spec in wanted.items() if slot not in self._workers]
        launched = list(self._pool.map(lambda item: self._launch_one(*item), new))
        failures: dict[str, NodeFailure] = {}
        deadline = time.monotonic() + self.start_timeout
        for (slot, _), result in zip(new, launched, strict=True):
            if isinstance(result, NodeFailure):
                failure: NodeFailure | None = result
            else:
                failure = None if result.handle.hosted else self._await_hello(result, deadline)
            if failure:
                failures[slot] = failure
        return failures

    def submit(self, task: Task) -> Future[TaskResult]:
        """Run ``task`` on its operator's worker; the future fails with NodeFailure.

        When the worker is idle the request leaves from the caller's thread at once, so
        the thread that waits for the reply wakes while the worker computes, not before.
        """
        worker = self._workers.get(task.slot)
        if worker is not None and worker.conn is not None and worker.lock.acquire(blocking=False):
            try:
                worker.conn.send_bytes(_run_message(task))
            except OSError:
                worker.lock.release()
            else:
                return self._pool.submit(self._reply, worker, task)
        return self._pool.submit(self._run, task)

    def environment(self, slot: str) -> dict[str, Any] | None:
        """The environment the worker in ``slot`` reported (id, python, executable, packages).

        Kept after the worker stops; None if no worker there ever said HELLO with one.
        """
        return self._environments.get(slot)

    def progress(self, slot: str, message: str) -> None:
        """Report what preparing ``slot``'s worker is doing (e.g. creating its environment)."""
        callback = self.progress_callback
        if callback is not None:
            callback(slot, message)

    def parallel_readers(self) -> int:
        """How many processes read a data-parallel task this runtime splits itself (1: it does not split)."""
        return 1

    def cancel(self, task_id: str) -> None:
        """Ask the task ``task_id`` (and its partitions) to stop (C2): a marker file in the session.

        Operators that check ``sdk.cancelled()`` between chunks stop early and the task
        ends as an error; others finish. :meth:`clear_cancel` removes the marker.
        """
        folder = self.arena.path / "cancel"
        folder.mkdir(exist_ok=True)
        (folder / task_id).touch()

    def clear_cancel(self, task_id: str) -> None:
        """Remove the cancel marker of a task that ended."""
        (self.arena.path / "cancel" / task_id).unlink(missing_ok=True)

    def slot_of(self, worker_id: str) -> str:
        """The slot a worker being launched belongs to (for :meth:`progress` from :meth:`launch`)."""
        worker = self._by_id.get(worker_id)
        return worker.slot if worker is not None else worker_id

    def serves(self, slot: str, spec: OperatorSpec) -> bool:
        """Whether a ready worker in ``slot`` runs exactly ``spec`` (same code, same image).

        A slot is a node id, and a later pipeline may give the same id another operator.
        """
        worker = self._workers.get(slot)
        return bool(worker and _same(worker.spec, spec) and self.alive(slot))

    def alive(self, slot: str) -> bool:
        """Whether a ready worker runs in ``slot``."""
        worker = self._workers.get(slot)
        return bool(worker and worker.ready and worker.handle.alive())

    def stop(self) -> None:
        """Shut every worker down (politely, then by force) and close the listener."""
        if self._stopped:
            return
        self._stopped = True
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for worker in workers:
            if worker.conn is not None:
                try:
                    worker.conn.send_bytes(protocol.encode(protocol.SHUTDOWN))
                except OSError:
                    pass
        list(self._pool.map(lambda w: self._reap(w, grace=2.0), workers))
        for listener in self._listeners:
            listener.close()
        Path(self.address).unlink(missing_ok=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------

    def _expect(self, worker: _Worker) -> None:
        """Accept ``worker``'s HELLO; call before launching it (it may greet at once)."""
        with self._lock:
            self._by_id[worker.id] = worker

    def _unexpect(self, worker: _Worker) -> None:
        """Refuse HELLOs from ``worker`` from now on."""
        with self._lock:
            self._by_id.pop(worker.id, None)

    def _launch_one(self, slot: str, spec: OperatorSpec) -> _Worker | NodeFailure:
        worker = _Worker(slot, spec, f"{spec.name}-{uuid.uuid4().hex[:8]}")
        self._expect(worker)
        try:
            worker.handle = self.launch(spec, worker.id)
        except NodeFailure as e:  # the adapter said exactly what failed
            self._unexpect(worker)
            return e
        except Exception as e:  # an adapter error is a start failure of this operator
            self._unexpect(worker)
            return NodeFailure(f"could not start a worker for {spec.name}: {e}")
        with self._lock:
            self._workers[slot] = worker
        return worker

    def _await_hello(self, worker: _Worker, deadline: float) -> NodeFailure | None:
        got = self.wait_hello(worker, deadline)
        if got == "died":
            return self._fail(worker, f"worker for {worker.spec.name} exited during start-up")
        if got == "timeout":
            return self._fail(worker, f"worker for {worker.spec.name} did not start within {self.start_timeout:g} s")
        return None

    @staticmethod
    def wait_hello(worker: _Worker, deadline: float) -> str | None:
        """Wait for ``worker``'s HELLO: None once it came, else ``"died"`` or ``"timeout"``; never a hang."""
        while not worker.hello.wait(_POLL):
            if not worker.handle.alive():
                return "died"
            if time.monotonic() > deadline:
                return "timeout"
        return None

    def _accept(self, listener: Listener) -> None:
        """Take workers' connections until stopped; match each HELLO to its launch."""
        while not self._stopped:
            try:
                conn = listener.accept()
            except (OSError, EOFError):
                if self._stopped:
                    return
                continue  # a failed handshake (bad key, dropped client): keep serving
            except Exception:
                continue
            try:
                if not conn.poll(self.start_timeout):
                    conn.close()
                    continue
                hello = protocol.decode(conn.recv_bytes())
            except (OSError, EOFError, ValueError):
                conn.close()
                continue
            worker = self._by_id.get(hello.get("worker", ""))
            if worker is None or hello.get("op") != protocol.HELLO:
                conn.close()
                continue
            if isinstance(hello.get("environment"), dict):
                try:
                    env_id = self.environment_id(worker.spec)
                except Exception:  # (an engine call failing now) must not stop this loop
                    env_id = None
                self._environments[worker.slot] = {"id": env_id, **hello["environment"]}
            worker.conn = conn
            worker.hello.set()

    def _run(self, task: Task) -> TaskResult:
        worker = self._workers.get(task.slot)
        if worker is None or worker.conn is None:
            raise NodeFailure(f"no running worker for {task.spec.name} in slot {task.slot}")
        worker.lock.acquire()
        try:
            worker.conn.send_bytes(_run_message(task))
        except OSError:
            worker.lock.release()
            raise self._fail(worker, f"worker for {task.spec.name} is gone") from None
        return self._reply(worker, task)

    def _reply(self, worker: _Worker, task: Task) -> TaskResult:
        """Wait for the answer to a sent task; releases the worker's lock."""
        try:
            reply = self._receive(worker, task)
        finally:
            worker.lock.release()
        if reply["op"] == protocol.ERROR:
            raise NodeFailure(reply["error"], traceback=reply.get("traceback", ""), log_tail=worker.handle.log_tail())
        return TaskResult(reply["outputs"], reply.get("duration_s", 0.0))

    def _receive(self, worker: _Worker, task: Task) -> dict[str, Any]:
        assert worker.conn is not None
        got = wait_for_message(worker.conn, worker.handle, time.monotonic() + self.timeout, task.on_progress)
        if isinstance(got, dict):
            return got
        if got == "timeout":
            failure = self._fail(worker, f"{task.node} exceeded its timeout of {self.timeout:g} s")
        else:
            failure = self._fail(worker, f"worker for {task.spec.name} died while running {task.node}")
        self.arena.discard(f"{task.id}--")
        raise failure

    def _fail(self, worker: _Worker, message: str) -> NodeFailure:
        """Kill and forget ``worker``; return the failure that describes it."""
        self._forget(worker)
        status = worker.handle.exit_status()
        if status is not None:
            message += f" (exit status {status})"
        return NodeFailure(message, log_tail=worker.handle.log_tail(), exit_status=status)

    def _forget(self, worker: _Worker) -> None:
        with self._lock:
            if self._workers.get(worker.slot) is worker:
                del self._workers[worker.slot]
        self._unexpect(worker)
        self._reap(worker)

    @staticmethod
    def _reap(worker: _Worker, grace: float = 0.0) -> None:
        deadline = time.monotonic() + grace
        while worker.handle.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        worker.handle.kill()
        if worker.conn is not None:
            worker.conn.close()
