"""What runs inside each MPI rank: ``python -m oremda_lab.worker.rank``.

The kernel (see :mod:`oremda_lab.runtime.mpi`) launches ``mpiexec -n N`` on this
module, in the kernel's Python or inside an operator's image (one container per
rank). Each rank imports mpi4py here, and only here, so the kernel never calls
``MPI_Init``. Like every worker it runs operators through
:mod:`oremda_lab.worker.invoke`; it imports only the worker, data plane and spec
layers (and mpi4py), so it ships in operator images.

State and policy
----------------
A rank holds:

* one control connection to the kernel (the session's Unix socket when the rank
  sees the kernel's shared-memory session, else TCP), over which it says HELLO and
  then answers LOAD, RUN and SHUTDOWN, one at a time;
* the operators it has loaded (warm: imported once), and per-node state for
  stateful operators;
* sub-communicators, one per set of ranks a task ran on, made on first use with
  ``MPI_Comm_create_group`` (collective over those ranks only).

A task names its *compute* ranks and a *leader*: a rank that sees the session
(the first compute rank when it does). Ranks that see the session take zero-copy
views of their slice. Every other compute rank receives its slice (``Irecv``; buffer
protocol, no pickling) from the input's sender: the rank that kept it from an earlier
task (outputs made off the kernel's machine stay on their rank, up to ``keep_bytes``),
else the leader, which reads it from shared memory.
Outputs join on the first compute rank with collectives (``Reduce`` for sum, max,
min; ``Gatherv`` for concatenate and stack), then go to the leader, which writes them
into the session and replies RESULT. Every other rank replies DONE. Before joining,
the compute ranks agree (``allreduce``) on whether any of them failed, so an
operator error on one rank becomes an ERROR on all and never a hang in a collective.
"""

from __future__ import annotations

import argparse
import faulthandler
import functools
import gc
import json
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections import OrderedDict
from multiprocessing.connection import Client
from pathlib import Path
from typing import Any

import numpy as np

from oremda_lab.dataplane.arena import Arena, owner_alive
from oremda_lab.dataplane.lazy import LazyArray, join_method
from oremda_lab.dataplane.refs import ObjectRef
from oremda_lab.worker import invoke, protocol
from oremda_lab.worker.forkserver import adopt_orphans, kill_descendants
from oremda_lab.worker.main import environment_report, load_operator, send_progress
from oremda_lab.worker.sdk import PortValue, TaskContext

LOAD = "load"
LOADED = "loaded"
DONE = "done"

# What an operator sees of its place in a data-parallel run (upstream operators that
# read their own part of a file use these; split inputs need neither).
INDEX_ENV = "OREMDA_PARALLEL_INDEX"
SIZE_ENV = "OREMDA_PARALLEL_SIZE"

_INPUT_TAG = 1000
_OUTPUT_TAG = 2000


def bounds(length: int, parts: int) -> list[tuple[int, int]]:
    """Split ``range(length)`` into ``parts`` contiguous near-equal pieces.

    Examples
    --------
    >>> bounds(10, 3)
    [(0, 4), (4, 7), (7, 10)]
    """
    base, extra = divmod(length, parts)
    out, start = [], 0
    for i in range(parts):
        stop = start + base + (1 if i < extra else 0)
        out.append((start, stop))
        start = stop
    return out


def sees_session(session: str, host: str) -> bool:
    """Whether this process is on the kernel's machine and can map its session."""
    try:
        owner = json.loads((Path(session) / "owner.json").read_text())
    except (OSError, ValueError):
        return False
    return owner.get("host") == host == socket.gethostname()


def mpi_shared_files(pid: int | str = "self") -> set[str]:
    """The shared-memory files process ``pid`` maps that are not the session's (the MPI library's).

    MPI libraries unlink them at ``MPI_Finalize``; a rank killed before that leaves them
    in /dev/shm.
    """
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return set()
    found = set()
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        path = fields[5] if len(fields) == 6 else ""
        if path.startswith("/dev/shm/") and not path.startswith("/dev/shm/oremda-"):
            found.add(path.removesuffix(" (deleted)"))
    return found


def die_with_owner(session: str, host: str) -> None:
    """End this rank, and the children in its process group, when the session's kernel dies.

    Ranks are not the kernel's children (the launcher and its proxies sit between them,
    each rank in a session of its own), so no parent-death signal reaches them, and a
    rank inside a task that never ends never reads its closed control socket. A rank on
    the kernel's machine waits on the kernel's pid (a pidfd: woken by its exit, no
    polling). Ranks on other machines are not watched.
    """
    if not sees_session(session, host) or not hasattr(os, "pidfd_open"):
        return
    try:
        owner = json.loads((Path(session) / "owner.json").read_text())
        pidfd = os.pidfd_open(int(owner["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return

    def watch() -> None:
        if owner_alive(owner):  # the pidfd may name a later process that reused the pid
            select.select([pidfd], [], [])
        end_rank()

    threading.Thread(target=watch, name="oremda-owner-watch", daemon=True).start()


def end_rank(*_: object) -> None:
    """End this rank now and leave nothing behind; also its SIGTERM handler.

    Unlinks the MPI library's shared-memory files (no ``MPI_Finalize`` will), kills the
    operator's processes (every descendant, the rank being their subreaper, and its
    process group when it leads one), then the rank itself. Slurm ends a job (``scancel``,
    its time limit, the hub stopping a server) with SIGTERM to every process at once, so
    this runs on SIGTERM too; the launcher's own SIGTERM (the runtime ending a job) as well.
    """
    for path in mpi_shared_files():
        Path(path).unlink(missing_ok=True)
    kill_descendants(os.getpid(), within=2.0)
    if os.getpgid(0) == os.getpid():
        os.killpg(0, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _take(array: np.ndarray, axis: int, start: int, stop: int) -> np.ndarray:
    index = [slice(None)] * array.ndim
    index[axis] = slice(start, stop)
    return array[tuple(index)]


class RankHost:
    """One rank's loop: control messages in, operator runs and MPI data movement."""

    def __init__(self, mpi: Any, args: argparse.Namespace):
        self.MPI = mpi
        self.world = mpi.COMM_WORLD
        self.rank = self.world.Get_rank()
        self.local = self.rank not in args.remote and sees_session(args.session, args.host)
        self.arena = Arena.attach(args.session) if self.local else None
        self.session = args.session
        self.operators: dict[str, tuple[Any, Any]] = {}
        self.state: dict[str, dict[str, Any]] = {}
        self.groups: dict[tuple[int, ...], Any] = {}
        self.resident: OrderedDict[str, np.ndarray] = OrderedDict()  # outputs kept on a remote rank
        self.keep_bytes = args.keep_bytes
        self._kept: list[str] = []
        self._evicted: list[str] = []
        self._last_views: dict[tuple[str, int], Any] = {}
        self._next_views: dict[tuple[str, int], Any] = {}
        authkey = bytes.fromhex(os.environ.get(protocol.AUTHKEY_ENV, ""))
        if self.local:
            self.conn = Client(args.connect, family="AF_UNIX", authkey=authkey)
        elif args.tcp:
            host, _, port = args.tcp.rpartition(":")
            self.conn = Client((host, int(port)), family="AF_INET", authkey=authkey)
        else:
            raise RuntimeError(
                f"rank {self.rank} on {socket.gethostname()} cannot see the session {args.session} "
                "and the runtime has no TCP control address (set MPIRuntime(control_host=...))"
            )
        self.conn.send_bytes(
            protocol.encode(
                protocol.HELLO,
                worker=f"{args.job}-r{self.rank}",
                operator="mpi",
                pid=os.getpid(),
                rank=self.rank,
                size=self.world.Get_size(),
                host=socket.gethostname(),
                local=self.local,
                environment=environment_report(),
            )
        )

    def serve(self) -> None:
        """Answer control messages until SHUTDOWN or until the kernel goes away."""
        while True:
            try:
                msg = protocol.decode(self.conn.recv_bytes())
            except (EOFError, OSError):
                return
            op = msg["op"]
            if op == LOAD:
                self.conn.send_bytes(self.load(msg["operators"]))
            elif op == protocol.RUN:
                self.conn.send_bytes(self.run(msg))
            elif op == protocol.PING:
                self.conn.send_bytes(protocol.encode(protocol.PONG))
            elif op == protocol.SHUTDOWN:
                return

    def load(self, operators: dict[str, str]) -> bytes:
        """Import operators (name -> folder) that are not loaded yet."""
        errors = {}
        for name, folder in operators.items():
            if name in self.operators:
                continue
            try:
                self.operators[name] = load_operator(folder)
            except Exception as e:
                errors[name] = f"{type(e).__name__}: {e}"
        return protocol.encode(
            LOADED, rank=self.rank, pid=os.getpid(), host=socket.gethostname(), local=self.local, errors=errors
        )

    # -- one task ------------------------------------------------------------------

    def run(self, msg: dict[str, Any]) -> bytes:
        """Take part in one task: as leader, holder of an input, compute rank, or several."""
        task = msg["task"]
        compute: list[int] = msg["compute"]
        leader: int = msg["leader"]
        start = time.perf_counter()
        result: dict[str, Any] | None = None  # the joined outputs, on the join root only
        error: dict[str, str] | None = None
        self._kept, self._evicted = [], []
        if not msg.get("parallel") and compute == [leader] == [self.rank] and self.arena is not None:
            # one rank on the kernel's machine: exactly what a worker process does
            spec, func = self.operators[msg["operator"]]
            try:
                return invoke.invoke(
                    spec, func, self.arena, msg, state=self._state(msg), view=lambda _port, ref: self._view(ref),
                    send_progress=functools.partial(send_progress, self.conn, task),
                )  # fmt: skip
            finally:
                self._last_views, self._next_views = self._next_views, {}
        try:
            received = self._transfer_inputs(msg)
            if self.rank in compute:
                result, error = self._compute(msg, received)
            del received
            if self.rank == leader:
                if compute[0] != self.rank:
                    result, error = self._receive_outputs(msg)
                if error is None:
                    assert result is not None
                    return invoke.reply(self.arena, task, result, start)
                return invoke.failed(self.arena, task, error)
            if self.rank == compute[0]:
                self._send_outputs(msg, result, error)
        except Exception as e:  # data movement itself failed; the kernel fails the task
            error = {"error": f"rank {self.rank}: {type(e).__name__}: {e}", "traceback": traceback.format_exc()}
            return invoke.failed(None, task, error, kept=self._kept, evicted=self._evicted)
        finally:
            self._last_views, self._next_views = self._next_views, {}
            gc.collect(0)
        return protocol.encode(DONE, task=task, rank=self.rank, kept=self._kept, evicted=self._evicted)

    def _transfer_inputs(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Move inputs to the compute ranks that cannot map them; returns what this rank received.

        Each input has one *sender*: the rank that keeps it from an earlier task on
        remote ranks (``holders``), else the leader, which maps the session. The sender
        sends each remote compute rank its part (``Isend``); receivers post ``Irecv``.
        Every rank posts all its sends and receives before waiting on any, so no order
        of senders and receivers can deadlock, whatever the message size.
        """
        compute, leader = msg["compute"], msg["leader"]
        holders = {p: int(r) for p, r in (msg.get("holders") or {}).items()}
        remote = [r for r in compute if r in msg["remote"]]
        if not remote:
            return {}
        split = msg.get("split") or {}
        axis = split.get("axis", 0)
        requests, keep, received = [], [], {}
        for tag, (port, wire) in enumerate(sorted(msg["inputs"].items())):
            if not wire.get("ref"):
                continue
            ref = ObjectRef.from_dict(wire["ref"])
            sender = holders.get(port, leader)
            is_split = port == split.get("port")
            if self.rank == sender:
                value = self.resident[ref.name] if port in holders else self._view(ref)
                array = np.frombuffer(value, np.uint8) if ref.kind == "bytes" else value
                for r in remote:
                    if r == sender:
                        continue
                    part = array
                    if is_split:
                        piece = bounds(array.shape[axis], len(compute))[compute.index(r)]
                        part = np.ascontiguousarray(_take(array, axis, *piece))
                    keep.append(part)
                    requests.append(self.world.Isend(part, dest=r, tag=_INPUT_TAG + tag))
            if self.rank in remote and self.rank != sender:
                if ref.kind == "bytes":
                    buffer = np.empty(ref.nbytes, np.uint8)
                else:
                    shape = list(ref.shape)
                    if is_split:
                        first, stop = bounds(shape[axis], len(compute))[compute.index(self.rank)]
                        shape[axis] = stop - first
                    buffer = np.empty(shape, np.dtype(ref.dtype))
                received[port] = buffer
                requests.append(self.world.Irecv(buffer, source=sender, tag=_INPUT_TAG + tag))
        self.MPI.Request.Waitall(requests)
        del keep
        return received

    def _inputs(self, msg: dict[str, Any], index: int, parts: int, received: dict[str, Any]) -> dict[str, PortValue]:
        """The part of the task's inputs this rank computes on (see :func:`~oremda_lab.worker.invoke.read_inputs`)."""
        split = msg.get("split") or {}
        holders = msg.get("holders") or {}

        def view(port: str, ref: ObjectRef) -> Any:
            if port in received:  # sent to this rank: already just its part
                value = received[port]
                if ref.kind == "bytes":
                    return value.tobytes()
                value.flags.writeable = False
                return value
            if self.local:
                value = self._view(ref)
            elif holders.get(port) == self.rank:
                value = self.resident[ref.name]
            else:
                raise RuntimeError(f"input {port!r} never reached rank {self.rank}")
            if port == split.get("port"):
                axis = split.get("axis", 0)
                value = _take(value, axis, *bounds(value.shape[axis], parts)[index])
            return value

        inputs = invoke.read_inputs(dict(sorted(msg["inputs"].items())), view)
        port = split.get("port")
        if port in inputs and isinstance(inputs[port].data, LazyArray):  # each rank reads its own rows from the file
            inputs[port] = PortValue(inputs[port].data.part(index, parts), inputs[port].meta)
        return inputs

    def _compute(
        self, msg: dict[str, Any], received: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, dict[str, str] | None]:
        """Compute rank: run the operator on this rank's part, then join on the root."""
        compute = msg["compute"]
        index = compute.index(self.rank)
        error = None
        outputs: dict[str, PortValue] = {}
        try:
            spec, func = self.operators[msg["operator"]]
            os.environ[INDEX_ENV], os.environ[SIZE_ENV] = str(index), str(len(compute))
            # The first compute rank reports progress for all (they run parts of equal size).
            progress = functools.partial(send_progress, self.conn, msg["task"]) if index == 0 else None
            outputs = invoke.call(
                spec, func, self._inputs(msg, index, len(compute), received), msg["params"], state=self._state(msg),
                task=TaskContext(msg["task"], self.session, progress),
                budget_bytes=self.arena.budget_bytes if self.arena is not None else None,
            )  # fmt: skip
        except Exception as e:
            error = invoke.error_fields(e)
        finally:
            os.environ.pop(INDEX_ENV, None)
            os.environ.pop(SIZE_ENV, None)
        group = self._group(compute)
        # Agree before any collective over data, so one rank's error cannot hang the others.
        if group is not None:
            self._arrive(group)
            errors = group.allgather(error)
            error = next((e for e in errors if e is not None), None)
            if error is not None and errors[index] is None:
                error = {**error, "error": f"on another rank: {error['error']}"}
        if error is not None:
            return None, error
        try:
            return self._join(group, outputs, msg), None
        except Exception as e:  # shapes that do not join: every rank sees the same gathered facts
            return None, {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}

    def _join(self, group: Any, outputs: dict[str, PortValue], msg: dict[str, Any]) -> dict[str, PortValue] | None:
        if not msg.get("parallel"):
            return outputs
        declared = {"split": msg.get("split"), "join": msg.get("join")}
        if group is None:  # one compute rank: only "stack" changes the shape (a leading axis of 1)
            return {
                p: PortValue(np.asarray(v.data)[np.newaxis], v.meta)
                if join_method(declared, p)[0] == "stack" and isinstance(v.data, np.ndarray)
                else v
                for p, v in outputs.items()
            }
        root = group.Get_rank() == 0
        joined: dict[str, PortValue] = {}
        facts = group.allgather(
            {
                p: (v.data.shape, v.data.dtype.str) if isinstance(v.data, np.ndarray) else None
                for p, v in outputs.items()
            }
        )
        for port in sorted(set().union(*facts)):
            method, axis = join_method(declared, port)
            have = [f.get(port) for f in facts]
            value = outputs.get(port)
            if method == "first" or all(h is None for h in have):  # non-arrays: the first rank's
                if root and value is not None:
                    joined[port] = value
                continue
            if any(h is None for h in have):
                raise TypeError(f"output {port!r} is not an array on every rank; it cannot be joined by {method!r}")
            dtypes = {h[1] for h in have}
            if len(dtypes) > 1:
                raise TypeError(f"output {port!r} has different dtypes on different ranks: {sorted(dtypes)}")
            data = np.ascontiguousarray(value.data)
            if method in ("sum", "max", "min"):
                if len({h[0] for h in have}) > 1:
                    raise ValueError(f"output {port!r} has different shapes on different ranks; cannot {method} them")
                op = {"sum": self.MPI.SUM, "max": self.MPI.MAX, "min": self.MPI.MIN}[method]
                out = np.empty_like(data) if root else None
                group.Reduce(data, out, op=op, root=0)
            elif method in ("concatenate", "stack"):
                if method == "stack":
                    data, axis = data[np.newaxis], 0
                    shapes = [(1, *h[0]) for h in have]
                else:
                    shapes = [h[0] for h in have]
                out = self._gather(group, data, shapes, axis, port, root)
            if root:
                joined[port] = PortValue(out, value.meta)
        return joined if root else None

    def _gather(self, group: Any, data: np.ndarray, shapes: list[tuple[int, ...]], axis: int, port: str, root: bool):
        """Concatenate every rank's ``data`` along ``axis`` on the group root (Gatherv)."""
        rest = {tuple(np.delete(s, axis)) for s in shapes}
        if len(rest) > 1:
            raise ValueError(f"output {port!r} differs across ranks in axes other than {axis}: {shapes}")
        moved = np.ascontiguousarray(np.moveaxis(data, axis, 0))
        # Bytes on the wire, so any numpy dtype works (MPI has no float16 or datetime).
        counts = [int(np.prod(s)) * data.itemsize for s in shapes]
        out = None
        if root:
            lengths = sum(s[axis] for s in shapes)
            inner = [d for i, d in enumerate(shapes[0]) if i != axis]
            out = np.empty([lengths, *inner], data.dtype)
            group.Gatherv(moved.view(np.uint8).reshape(-1), [out.view(np.uint8).reshape(-1), counts], root=0)
            return np.moveaxis(out, 0, axis)
        group.Gatherv(moved.view(np.uint8).reshape(-1), None, root=0)
        return None

    def _send_outputs(self, msg: dict[str, Any], result: dict[str, PortValue] | None, error: dict | None) -> None:
        """Remote join root: send the joined outputs to the leader (header, then buffers)."""
        leader = msg["leader"]
        if error is not None:
            self.world.send({"error": error}, dest=leader, tag=_OUTPUT_TAG)
            return
        assert result is not None
        header = {}
        for port, value in sorted(result.items()):
            data = value.data
            if isinstance(data, (bytes, bytearray)):
                header[port] = {"kind": "bytes", "nbytes": len(data), "meta": value.meta}
            elif data is None:
                header[port] = {"kind": "none", "meta": value.meta}
            else:
                data = np.asarray(data)
                header[port] = {"kind": "array", "dtype": data.dtype.str, "shape": data.shape, "meta": value.meta}
        self.world.send({"outputs": header}, dest=leader, tag=_OUTPUT_TAG)
        for index, (port, value) in enumerate(sorted(result.items())):
            kind = header[port]["kind"]
            if kind == "bytes":
                self.world.Send(np.frombuffer(value.data, np.uint8), dest=leader, tag=_OUTPUT_TAG + 1 + index)
            elif kind == "array":
                data = np.ascontiguousarray(value.data)
                self.world.Send(data.view(np.uint8).reshape(-1), dest=leader, tag=_OUTPUT_TAG + 1 + index)
                self._keep(f"{msg['task']}--{port}", data)

    def _keep(self, name: str, data: np.ndarray) -> None:
        """Keep an output made on this (remote) rank for the next node to read from here.

        The kernel's session gets a copy too (for the cache and displays), but a
        following node on remote ranks then receives it from this rank directly instead
        of from the kernel's machine. Oldest first out beyond ``keep_bytes``; the
        kernel learns what was kept and dropped from the DONE reply.
        """
        if data.nbytes > self.keep_bytes:
            return
        data.flags.writeable = False
        self.resident[name] = data
        self._kept.append(name)
        while sum(a.nbytes for a in self.resident.values()) > self.keep_bytes:
            old, _ = self.resident.popitem(last=False)
            self._evicted.append(old)

    def _receive_outputs(self, msg: dict[str, Any]) -> tuple[dict[str, PortValue] | None, dict | None]:
        source = msg["compute"][0]
        header = self.world.recv(source=source, tag=_OUTPUT_TAG)
        if "error" in header:
            return None, header["error"]
        result = {}
        for index, (port, h) in enumerate(sorted(header["outputs"].items())):
            if h["kind"] == "none":
                result[port] = PortValue(None, h["meta"])
            elif h["kind"] == "bytes":
                buffer = np.empty(h["nbytes"], np.uint8)
                self.world.Recv(buffer, source=source, tag=_OUTPUT_TAG + 1 + index)
                result[port] = PortValue(buffer.tobytes(), h["meta"])
            else:
                data = np.empty(h["shape"], np.dtype(h["dtype"]))
                self.world.Recv(data.view(np.uint8).reshape(-1), source=source, tag=_OUTPUT_TAG + 1 + index)
                result[port] = PortValue(data, h["meta"])
        return result, None

    # -- helpers -------------------------------------------------------------------

    def _view(self, ref: ObjectRef) -> Any:
        """A view of ``ref``, reusing the previous task's mapping of the same object.

        Re-running a node with new parameters reads the same input again; mapping it
        afresh costs a page fault per 4 KiB (about half the time of a virtual detector).
        Object names are never reused, and the inode tells a pooled file's next life
        apart, so a kept mapping is always of the same bytes. Only the last task's
        inputs are kept, which bounds the memory held.
        """
        assert self.arena is not None
        key = (ref.name, os.stat(self.arena.objects / ref.name).st_ino)
        value = self._last_views.get(key)
        if value is None:
            value = self.arena.get(ref)
        self._next_views[key] = value
        return value

    @staticmethod
    def _arrive(group: Any) -> None:
        """Wait, sleeping, until every rank of ``group`` is here.

        MPI implementations busy-poll inside blocking calls; a rank that finished its
        slice early would burn the core a slower rank (or another process) needs.
        """
        request = group.Ibarrier()
        pause = 1e-5
        while not request.Test():
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)

    def _group(self, ranks: list[int]) -> Any:
        """The communicator over ``ranks`` (None for a single rank), made once."""
        if len(ranks) == 1:
            return None
        key = tuple(ranks)
        if key not in self.groups:
            group = self.world.Get_group().Incl(list(ranks))
            self.groups[key] = self.world.Create_group(group, tag=7)
            group.Free()
        return self.groups[key]

    def _state(self, msg: dict[str, Any]) -> dict[str, Any]:
        """The state a stateful operator keeps for this node (one per slot, as a worker has)."""
        return self.state.setdefault(msg.get("slot") or msg["node"], {})


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (one process per rank)."""
    parser = argparse.ArgumentParser(prog="python -m oremda_lab.worker.rank")
    parser.add_argument("--connect", required=True, help="the kernel's control socket (Unix)")
    parser.add_argument("--tcp", default="", help="HOST:PORT control address for ranks on other machines")
    parser.add_argument("--session", required=True, help="the kernel's shared-memory session folder")
    parser.add_argument("--host", required=True, help="the kernel's host name")
    parser.add_argument("--job", required=True, help="job id to announce")
    parser.add_argument("--remote", default="", help="ranks to treat as remote (tests a multi-node run on one machine)")
    parser.add_argument("--keep-bytes", type=int, default=1 << 30, help="outputs a remote rank keeps for the next node")
    args = parser.parse_args(argv)
    args.remote = {int(r) for r in args.remote.split(",") if r}
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <rank pid>`: stacks to the job log
    adopt_orphans()  # what an operator starts stays below the rank, for end_rank to find
    signal.signal(signal.SIGTERM, end_rank)
    die_with_owner(args.session, args.host)
    from mpi4py import MPI  # only here, inside the job: MPI_Init must not run in the kernel

    host = RankHost(MPI, args)
    try:
        host.serve()
    finally:
        host.conn.close()
        kill_descendants(os.getpid(), within=2.0)  # a polite stop too: what its operators started goes
    sys.stdout.flush()


if __name__ == "__main__":
    main()
