"""Partitions of a lazy dataset on several local workers: one data-parallel node, N workers.

State and policy
----------------
A node whose operator declares ``parallel`` (split port and join methods in
operator.json) and whose split input is a lazy reference to a file
(:class:`~oremda_lab.dataplane.lazy.LazyArray`) runs as N tasks when the runtime
does not split such tasks itself (``Runtime.splits_parallel``; MPI ranks do):

* N is ``OREMDA_PARALLEL_WORKERS`` (default: the CPU count), at most the rows of axis 0;
* partition ``i`` is a contiguous block of rows (:meth:`LazyArray.part`), run in slot
  ``<node>~p<i>`` (``<node>`` itself for partition 0), each slot a warm worker of its
  own, started on first use;
* each worker reads its partition from the file in chunks within the memory budget
  (:func:`oremda_lab.dataplane.lazy.call`) and reports progress; the node's progress
  is the mean of its partitions';
* the partitions' outputs join here as the operator declares (sum, max, min,
  concatenate, stack, first), into one object of the node's task; the partial
  outputs are freed;
* a failed partition cancels the others (the node task's cancel marker covers its
  partitions) and fails the node with its error; nothing of the node stays in the session;
* data-parallel nodes on lazy data run one at a time (on any runtime), so the chunk
  buffers of all workers together stay within the memory budget.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, wait
from typing import Any

import numpy as np

from oremda_lab.dataplane import lazy
from oremda_lab.dataplane.refs import ObjectRef
from oremda_lab.runtime.base import NodeFailure, Runtime, Task, TaskResult
from oremda_lab.worker.sdk import PART_SEPARATOR

# Data-parallel nodes on lazy data run one at a time: each uses every worker (or rank),
# whose chunks are sized to share the memory budget among them.
_one_at_a_time = threading.Lock()


def lazy_split(task: Task) -> lazy.LazyArray | None:
    """The lazy reference a data-parallel task splits, or None."""
    if not task.spec.parallel:
        return None
    port = (task.spec.parallel.get("split") or {}).get("port")
    return lazy.from_wire(task.inputs.get(port) or {})


def count(runtime: Runtime, task: Task) -> int:
    """How many partitions ``task`` runs as here (1: not partitioned)."""
    source = lazy_split(task)
    if runtime.splits_parallel or source is None:
        return 1
    return max(1, min(lazy.workers_env(), source.shape[0]))


def slot(node: str, index: int) -> str:
    """The worker slot of partition ``index`` of ``node``."""
    return node if index == 0 else f"{node}{PART_SEPARATOR}p{index}"


def submit(runtime: Runtime, task: Task) -> Future[TaskResult]:
    """Run ``task``: on its worker, or as partitions on several workers joined into one result.

    A task on lazy data waits for the one before it (a superseded one then stops at
    its first chunk: its cancel marker is there).
    """
    if lazy_split(task) is None:
        return runtime.submit(task)
    parts = count(runtime, task)
    future: Future[TaskResult] = Future()

    def run() -> None:
        try:
            with _one_at_a_time:
                future.set_result(_run(runtime, task, parts) if parts > 1 else runtime.submit(task).result())
        except BaseException as e:  # the scheduler reports it as the node's error
            future.set_exception(e)

    threading.Thread(target=run, name=f"oremda-partitions-{task.node}", daemon=True).start()
    return future


def _run(runtime: Runtime, task: Task, parts: int) -> TaskResult:
    started = time.perf_counter()
    assert task.spec.parallel is not None
    port = task.spec.parallel["split"]["port"]
    wire = task.inputs[port]
    source = lazy.from_wire(wire)
    assert source is not None
    missing = {
        slot(task.node, i): task.spec for i in range(1, parts) if not runtime.serves(slot(task.node, i), task.spec)
    }
    failures = runtime.start(missing) if missing else {}
    if failures:
        raise next(iter(failures.values()))
    fractions = [0.0] * parts
    lock = threading.Lock()

    def hook(index: int) -> Any:
        def report(fraction: float, message: str) -> None:
            with lock:
                fractions[index] = fraction
                done = sum(f >= 1 for f in fractions)
                total = sum(fractions) / parts
            if task.on_progress is not None:
                task.on_progress(total, f"{done}/{parts} partitions")

        return report

    futures = [
        runtime.submit(
            Task(
                id=f"{task.id}{PART_SEPARATOR}p{i}", node=task.node, spec=task.spec, params=task.params,
                inputs={**task.inputs, port: lazy.to_wire(source.part(i, parts), wire.get("meta", {}))},
                slot=slot(task.node, i), extra=task.extra, on_progress=hook(i),
            )
        )
        for i in range(parts)
    ]  # fmt: skip
    results: list[TaskResult] = []
    failure: BaseException | None = None
    pending = set(futures)
    while pending:  # the first failure cancels the other partitions
        done, pending = wait(pending, return_when=FIRST_EXCEPTION)
        if failure is None:
            failure = next((f.exception() for f in done if f.exception() is not None), None)
            if failure is not None:
                runtime.cancel(task.id)
    if failure is None:
        results = [f.result() for f in futures]
    else:
        runtime.clear_cancel(task.id)
        for f in futures:
            if f.exception() is None:
                _free(runtime, f.result())
        raise failure
    try:
        outputs = _join(runtime, task, results)
    except Exception as e:
        raise NodeFailure(f"{task.node}: partitions do not join: {type(e).__name__}: {e}") from None
    finally:
        for result in results:
            _free(runtime, result)
    return TaskResult(outputs, time.perf_counter() - started)


def _join(runtime: Runtime, task: Task, results: list[TaskResult]) -> dict[str, dict[str, Any]]:
    """Join the partitions' outputs port by port into objects of the node's task."""
    arena = runtime.arena
    joined: dict[str, dict[str, Any]] = {}
    for port in results[0].outputs:
        joiner = lazy.Joiner(*lazy.join_method(task.spec.parallel, port), port)
        for result in results:
            wire = result.outputs[port]
            ref = wire.get("ref")
            data = arena.get(ObjectRef.from_dict(ref)) if ref else lazy.from_wire(wire)
            joiner.add(data, wire.get("meta", {}))
            del data
        value, meta = joiner.result(), joiner.meta or {}
        if isinstance(value, lazy.LazyArray):
            joined[port] = lazy.to_wire(value, meta)
        elif value is None:
            joined[port] = {"ref": None, "meta": meta}
        else:
            made = arena.put(value if isinstance(value, bytes) else np.asarray(value), f"{task.id}--{port}")
            joined[port] = {"ref": made.to_dict(), "meta": meta}
    return joined


def _free(runtime: Runtime, result: TaskResult) -> None:
    for wire in result.outputs.values():
        if wire.get("ref"):
            runtime.arena.free(ObjectRef.from_dict(wire["ref"]))
