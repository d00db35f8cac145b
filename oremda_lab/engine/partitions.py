"""Partitions of a lazy dataset: one data-parallel node on N local workers, or in blocks on MPI ranks.

State and policy
----------------
A node whose operator declares ``parallel`` (split port and join methods in
operator.json) and whose split input is a lazy reference to a file
(:class:`~oremda_lab.dataplane.lazy.LazyArray`) runs as partitions when the runtime
does not split such tasks itself (``Runtime.splits_parallel``; MPI ranks do):

* N workers, N = ``OREMDA_PARALLEL_WORKERS`` (default: the CPU count), at most the rows
  of axis 0; worker ``w`` runs in slot ``<node>~p<w>`` (``<node>`` itself for ``w`` 0),
  a warm worker of its own, started on first use;
* K partitions (:func:`row_ranges`), contiguous near-equal blocks of rows: N when the
  data are small, more when they are large, so that a partition is at most
  ``PARTITION_CHUNKS`` of a worker's chunks (K a multiple of N). The workers take
  partitions in turn, the next one as soon as they finish one; every byte is read once;
* each worker reads its partition from the file in chunks within the memory budget
  (:func:`oremda_lab.dataplane.lazy.call`) and reports progress; the node's progress
  is the mean of its partitions';
* the partitions' outputs join as the operator declares (sum, max, min, concatenate,
  stack, first), in partition order whatever order they finish in (the same bits every
  run), into one object of the node's task; each partition's output is freed once joined;
* partial results (``on_partial``): at most every ``PARTIAL_INTERVAL`` seconds, and
  not before the node has run that long, the outputs joined from the partitions done
  so far (:class:`_Partial`) go to a callback while the others still run;
* a failed partition cancels the others (the node task's cancel marker covers its
  partitions), no further partition starts, and the node fails with its error;
  nothing of the node stays in the session;
* data-parallel nodes on lazy data run one at a time (on any runtime), so the chunk
  buffers of all workers together stay within the memory budget;
* on a runtime that splits such tasks itself (MPI), the node runs as blocks of rows,
  one after the other, each split by the runtime among its ranks (up to
  ``BLOCK_CHUNKS`` chunks per rank): the blocks join, and preview, as partitions do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import replace
from typing import Any

import numpy as np

from oremda_lab.dataplane import lazy
from oremda_lab.dataplane.arena import Arena
from oremda_lab.dataplane.refs import ObjectRef
from oremda_lab.runtime.base import NodeFailure, Runtime, Task, TaskResult
from oremda_lab.worker.sdk import PART_SEPARATOR

# Data-parallel nodes on lazy data run one at a time: each uses every worker (or rank),
# whose chunks are sized to share the memory budget among them.
_one_at_a_time = threading.Lock()
# A partition is at most this many of a worker's chunks: long enough that a task's round
# trip costs nothing next to its reads, short enough that partial results come often.
PARTITION_CHUNKS = 4
# On MPI, a block is at most this many chunks per rank: ranks wait for each other at the end
# of each block, so blocks are longer than local partitions.
BLOCK_CHUNKS = 8
# Seconds between partial results of a partitioned node (and before its first one).
PARTIAL_INTERVAL = 0.5

# port -> (value, meta) joined from the partitions done so far; then done and total partitions.
OnPartial = Callable[[dict[str, tuple[Any, dict[str, Any]]], int, int], None]


def lazy_split(task: Task) -> lazy.LazyArray | None:
    """The lazy reference a data-parallel task splits, or None."""
    if not task.spec.parallel:
        return None
    port = (task.spec.parallel.get("split") or {}).get("port")
    return lazy.from_wire(task.inputs.get(port) or {})


def row_ranges(runtime: Runtime, task: Task, previews: bool = True) -> list[tuple[int, int]]:
    """The rows ``(start, stop)`` of axis 0 each partition of ``task`` reads here.

    One range: the task runs whole (its runtime splits it, or it is small); none: its
    split input is not lazy.

    N workers share the memory budget; K near-equal partitions, K a multiple of N, each
    at most ``PARTITION_CHUNKS`` of a worker's chunks (:func:`lazy.chunk_bytes`). A
    ``stack`` join depends on how many parts there are: such a node runs as N partitions.

    A runtime that splits a task itself (MPI: every rank reads its part) gets blocks of
    rows, one after the other, each up to ``BLOCK_CHUNKS`` chunks per rank: after
    each block the engine has a partial result to preview. Without ``previews`` (no
    display shows one), or for a ``stack`` node, it runs whole: the ranks never wait for
    each other between blocks.
    """
    source = lazy_split(task)
    if source is None:
        return []
    methods = {lazy.join_method(task.spec.parallel, port)[0] for port in task.spec.parallel["join"]}
    if runtime.splits_parallel and ("stack" in methods or not previews):
        return [source.rows]
    workers = max(1, min(_workers(runtime), source.shape[0]))
    parts = workers
    if "stack" not in methods:
        chunk = lazy.chunk_bytes(lazy.memory_budget(runtime.arena.budget_bytes), lazy.workers_env())
        try:
            per_reader = BLOCK_CHUNKS if runtime.splits_parallel else PARTITION_CHUNKS
            rows = per_reader * source.chunk_rows(chunk) * runtime.parallel_readers()
        except lazy.MemoryBudgetExceeded:  # one row is larger than a chunk: the worker says so
            rows = source.shape[0]
        parts = workers * -(-source.shape[0] // (rows * workers))
    return [source.part(i, parts).rows for i in range(min(parts, source.shape[0]))]


def _workers(runtime: Runtime) -> int:
    """Workers that take partitions in turn: local ones; a runtime that splits tasks runs one block at a time."""
    return 1 if runtime.splits_parallel else lazy.workers_env()


def slot(node: str, index: int) -> str:
    """The worker slot of worker ``index`` of ``node``'s partitions."""
    return node if index == 0 else f"{node}{PART_SEPARATOR}p{index}"


def submit(runtime: Runtime, task: Task, on_partial: OnPartial | None = None) -> Future[TaskResult]:
    """Run ``task``: on its worker, or as partitions on several workers joined into one result.

    ``on_partial(values, done, total)`` hears the partial results of a partitioned task
    (from another thread; ``values`` are the callee's to keep). A task on lazy data
    waits for the one before it (a superseded one then stops at its first chunk: its
    cancel marker is there).
    """
    if lazy_split(task) is None:
        return runtime.submit(task)
    future: Future[TaskResult] = Future()

    def run() -> None:
        try:
            with _one_at_a_time:
                ranges = row_ranges(runtime, task, previews=on_partial is not None)
                done = _run(runtime, task, ranges, on_partial) if len(ranges) > 1 else runtime.submit(task).result()
                future.set_result(done)
        except BaseException as e:  # the scheduler reports it as the node's error
            future.set_exception(e)

    threading.Thread(target=run, name=f"oremda-partitions-{task.node}", daemon=True).start()
    return future


def _run(runtime: Runtime, task: Task, ranges: list[tuple[int, int]], on_partial: OnPartial | None) -> TaskResult:
    started = time.perf_counter()
    assert task.spec.parallel is not None
    port = task.spec.parallel["split"]["port"]
    wire = task.inputs[port]
    source = lazy.from_wire(wire)
    assert source is not None
    slots = [slot(task.node, w) for w in range(min(_workers(runtime), len(ranges)))]
    failures = runtime.start({s: task.spec for s in slots[1:] if not runtime.serves(s, task.spec)})
    if failures:
        raise next(iter(failures.values()))
    fractions = [0.0] * len(ranges)
    lock = threading.Lock()

    def hook(index: int) -> Any:
        def report(fraction: float, message: str) -> None:
            with lock:
                fractions[index] = fraction
                done = sum(f >= 1 for f in fractions)
                total = sum(fractions) / len(ranges)
            if task.on_progress is not None:
                task.on_progress(total, f"{done}/{len(ranges)} partitions")

        return report

    def dispatch(worker: str) -> None:  # the worker's next partition, unless one failed
        index = None if failure is not None else next(queue, None)
        if index is None:
            return
        part = replace(source, rows=ranges[index])
        partition = Task(
            id=f"{task.id}{PART_SEPARATOR}p{index}", node=task.node, spec=task.spec, params=task.params,
            inputs={**task.inputs, port: lazy.to_wire(part, wire.get("meta", {}))},
            slot=worker, extra=task.extra, on_progress=hook(index),
        )  # fmt: skip
        running[runtime.submit(partition)] = (index, worker)

    joined = _Joined(runtime, task)
    partial = _Partial(task, ranges) if on_partial is not None else None
    running: dict[Future[TaskResult], tuple[int, str]] = {}
    queue = iter(range(len(ranges)))
    failure: BaseException | None = None
    for worker in slots:
        dispatch(worker)
    due, previewed = started + PARTIAL_INTERVAL, 0
    while running:
        pending = partial is not None and failure is None and partial.done > previewed
        timeout = max(0.0, due - time.perf_counter()) if pending else None
        finished, _ = wait(running, timeout=timeout, return_when=FIRST_COMPLETED)
        for future in finished:
            index, worker = running.pop(future)
            error = future.exception()
            if failure is None and error is None:
                result = future.result()
                try:
                    if partial is not None:
                        partial.add(index, result, runtime)
                    joined.add(index, result)
                except Exception as e:
                    error = NodeFailure(f"{task.node}: partitions do not join: {type(e).__name__}: {e}")
            elif error is None:
                _free(runtime, future.result())
            if error is not None and failure is None:
                failure = error
                runtime.cancel(task.id)  # the first failure cancels the other partitions
            dispatch(worker)
        now = time.perf_counter()
        if partial is not None and on_partial is not None and failure is None and running and now >= due:
            if partial.done > previewed:
                previewed, due = partial.done, now + PARTIAL_INTERVAL
                on_partial(partial.values(), partial.done, len(ranges))
    if failure is not None:
        runtime.clear_cancel(task.id)
        joined.free()
        raise failure
    try:
        return TaskResult(joined.result(), time.perf_counter() - started)
    except Exception as e:
        raise NodeFailure(f"{task.node}: partitions do not join: {type(e).__name__}: {e}") from None


class _Joined:
    """The partitions' outputs joined port by port in partition order; each is freed once joined."""

    def __init__(self, runtime: Runtime, task: Task):
        self.runtime, self.task = runtime, task
        self.joiners: dict[str, lazy.Joiner] = {}
        self.early: dict[int, TaskResult] = {}  # finished before an earlier partition: waits for it
        self.next = 0

    def add(self, index: int, result: TaskResult) -> None:
        """Take partition ``index``'s result; join every result whose predecessors are joined."""
        self.early[index] = result
        while self.next in self.early:
            result = self.early.pop(self.next)
            self.next += 1
            try:
                for port, wire in result.outputs.items():
                    if port not in self.joiners:
                        self.joiners[port] = lazy.Joiner(*lazy.join_method(self.task.spec.parallel, port), port)
                    self.joiners[port].add(_value(self.runtime, wire), wire.get("meta", {}))
            finally:
                _free(self.runtime, result)

    def free(self) -> None:
        """Free the results not joined yet (the node failed)."""
        for result in self.early.values():
            _free(self.runtime, result)
        self.early.clear()

    def result(self) -> dict[str, dict[str, Any]]:
        """The joined outputs, as objects of the node's task."""
        return {
            port: store(self.runtime.arena, joiner.result(), joiner.meta or {}, f"{self.task.id}--{port}")
            for port, joiner in self.joiners.items()
        }


class _Partial:
    """The outputs joined from the partitions done so far, in any order: what a preview shows.

    ``concatenate`` (and ``stack``): an array of the final shape whose rows (parts) not
    done yet are zero; ``sum``, ``max``, ``min``: the parts done joined; ``first``:
    partition 0's value once it is done. A port whose parts do not map onto the split
    rows (a concatenated part whose length is not its row count) has no partial value.
    """

    def __init__(self, task: Task, ranges: list[tuple[int, int]]):
        self.task, self.ranges = task, ranges
        self.done = 0
        self.ports: dict[str, tuple[Any, dict[str, Any]]] = {}
        self.broken: set[str] = set()

    def add(self, index: int, result: TaskResult, runtime: Runtime) -> None:
        """Take partition ``index``'s result (read, never kept: it stays the caller's)."""
        self.done += 1
        for port, wire in result.outputs.items():
            if port in self.broken:
                continue
            try:
                placed = self._place(port, index, _value(runtime, wire), wire.get("meta", {}))
            except (TypeError, ValueError):  # parts that do not join: the join says so, not the preview
                placed = False
            if not placed:
                self.broken.add(port)
                self.ports.pop(port, None)

    def _place(self, port: str, index: int, data: Any, meta: dict[str, Any]) -> bool:
        method, axis = lazy.join_method(self.task.spec.parallel, port)
        held = self.ports[port][0] if port in self.ports else None
        if method == "first" or not isinstance(data, np.ndarray):
            if index == 0:
                self.ports[port] = (np.array(data) if isinstance(data, np.ndarray) else data, meta)
            return True
        if method in ("sum", "max", "min"):
            if held is None:
                self.ports[port] = (np.array(data), meta)
            elif held.shape != data.shape:
                return False
            else:
                {"sum": np.add, "max": np.maximum, "min": np.minimum}[method](held, data, out=held)
            return True
        if method == "stack":
            shape, where = (len(self.ranges), *data.shape), (index,)
        else:
            axis = axis or 0
            start, stop = self.ranges[index]
            if data.ndim <= axis or data.shape[axis] != stop - start:
                return False
            shape = (*data.shape[:axis], self.ranges[-1][1] - self.ranges[0][0], *data.shape[axis + 1 :])
            first = start - self.ranges[0][0]
            where = (*(slice(None),) * axis, slice(first, first + stop - start))
        if held is None:
            held = np.zeros(shape, data.dtype)
            self.ports[port] = (held, meta)
        if held.shape != shape:
            return False
        held[where] = data
        return True

    def values(self) -> dict[str, tuple[Any, dict[str, Any]]]:
        """A copy of each port's partial value and its meta."""
        return {
            port: (np.array(value) if isinstance(value, np.ndarray) else value, dict(meta))
            for port, (value, meta) in self.ports.items()
        }


def store(arena: Arena, value: Any, meta: dict[str, Any], name: str) -> dict[str, Any]:
    """The wire value of ``value``: put into ``arena`` as ``name`` (an array or bytes), a lazy reference, or none."""
    if isinstance(value, lazy.LazyArray):
        return lazy.to_wire(value, meta)
    if value is None:
        return {"ref": None, "meta": meta}
    made = arena.put(value if isinstance(value, bytes) else np.asarray(value), name)
    return {"ref": made.to_dict(), "meta": meta}


def _value(runtime: Runtime, wire: dict[str, Any]) -> Any:
    """What an output wire value holds: a view of its object, a lazy reference, or None."""
    ref = wire.get("ref")
    return runtime.arena.get(ObjectRef.from_dict(ref)) if ref else lazy.from_wire(wire)


def _free(runtime: Runtime, result: TaskResult) -> None:
    for wire in result.outputs.values():
        if wire.get("ref"):
            runtime.arena.free(ObjectRef.from_dict(wire["ref"]))
