"""The one scheduling loop: ready nodes -> runtime.submit -> results -> events.

State and policy
----------------
One call of :func:`execute` runs one pipeline snapshot. It holds:

* ``keys``: node -> cache key, computed up front in topological order (a key depends
  only on the operator, its parameters, data-file fingerprints and upstream keys);
* ``results``: node -> :class:`NodeResult` as nodes finish;
* ``in_flight``: futures of submitted tasks.

A node is submitted once every upstream operator node has finished; a cache hit
finishes at once. Independent branches are in flight together (one task at a time per
operator worker, which the runtime enforces). An error marks the descendants
``skipped`` and lets the other branches finish. When ``superseded()`` turns true
(a newer request arrived), nothing new is submitted; in-flight tasks finish and
are cached, so the newer run can use them.

Partial graphs: nodes that cannot run (``blocked``: an input not connected, their own
validation error, an image that cannot be found; see
:meth:`~oremda_lab.spec.pipeline.Pipeline.readiness`) are reported ``waiting`` or
``error`` first and left out; the rest runs. A display node is ``done`` as soon as
all its producers have finished, carrying its layers, so it updates within the run.

Partial results: while a node runs as partitions (:mod:`~oremda_lab.engine.partitions`),
its partial outputs run through the operators between it and the displays it leads to
(:class:`_Previews`: a preview, never cached, nothing of it kept), and those displays
emit ``done`` events with ``partial=True``. The node's own end, or a newer request,
stops its previews first: no partial event follows the final one.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oremda_lab.dataplane import lazy
from oremda_lab.engine import graph, partitions
from oremda_lab.engine.cache import Cache, Entry, node_key
from oremda_lab.runtime.base import NodeFailure, Runtime, Task, TaskResult
from oremda_lab.spec.operator import OperatorSpec, data_file
from oremda_lab.spec.pipeline import Blocked, Pipeline

log = logging.getLogger(__name__)
_task_ids = itertools.count(1)
_CANCEL_POLL = 0.1  # seconds: how soon a running plan notices it is superseded


@dataclass
class NodeResult:
    """How one node fared in one run (``message``: what a ``waiting`` node waits for)."""

    status: str = "queued"
    duration_s: float | None = None
    cached: bool = False
    error: dict[str, Any] | None = None
    key: str | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    message: str = ""


@dataclass
class Plan:
    """A pipeline snapshot with everything resolved for execution (``order``: the nodes that run)."""

    pipeline: Pipeline
    order: list[str]
    blocked: dict[str, Blocked]
    specs: dict[str, OperatorSpec]
    params: dict[str, dict[str, Any]]
    keys: dict[str, str]
    files: dict[str, Path]  # "node.param" -> the regular file it names inside the data folder


def plan(
    pipeline: Pipeline,
    data_dir: Path,
    digest: Callable[[OperatorSpec], str],
    blocked: Mapping[str, Blocked] | None = None,
) -> Plan:
    """Resolve specs, parameters (defaults filled in) and cache keys of the nodes that can run.

    ``blocked`` (node -> why it cannot run, from ``pipeline.readiness()``) must hold every
    node with a problem, and every operator node downstream of one.
    """
    blocked = dict(blocked or {})
    order = graph.operator_nodes(pipeline, among=pipeline.nodes.keys() - blocked.keys())
    specs, params, keys, files = {}, {}, {}, {}
    for node_id in order:
        spec = pipeline.spec(node_id)
        assert spec is not None, "plan() needs every node with a problem blocked"
        specs[node_id] = spec
        params[node_id] = spec.resolved_params(pipeline.nodes[node_id].params)
        fingerprints = {}
        for name, p in spec.params.items():
            value = params[node_id].get(name)
            if p.file and isinstance(value, str) and value:
                try:
                    path = data_file(data_dir, value)
                except (OSError, ValueError) as e:
                    # Never read here (a FIFO or /dev/zero would hang): the reader reports it.
                    fingerprints[name] = f"unusable: {e}"
                    continue
                files[f"{node_id}.{name}"] = path
                fingerprints[name] = _fingerprint(path)
        inputs = {e.target.port: f"{keys[e.source.id]}/{e.source.port}" for e in pipeline.inputs_of(node_id)}
        keys[node_id] = node_key(digest(spec), {"params": params[node_id], "files": fingerprints}, inputs)
    return Plan(pipeline, order, blocked, specs, params, keys, files)


def display_layers(pipeline: Pipeline, node_id: str, results: Mapping[str, NodeResult]) -> list[dict[str, Any]]:
    """The wire values display ``node_id`` shows: its producers' outputs that exist, in z order."""
    wires = []
    for edge in pipeline.inputs_of(node_id):
        result = results.get(edge.source.id)
        if result is not None and result.status in ("done", "cached") and edge.source.port in result.outputs:
            wires.append(result.outputs[edge.source.port])
    return sorted(wires, key=lambda wire: (wire.get("meta") or {}).get("z", 0))


def execute(
    plan: Plan,
    runtime: Runtime,
    cache: Cache,
    emit: Callable[[str | None, str], None],
    superseded: Callable[[], bool],
) -> tuple[dict[str, NodeResult], bool]:
    """Run a plan; returns per-node results and whether it was cut short by a newer one.

    ``emit(node, state, **fields)`` reports each state change; a display node's ``done``
    carries ``layers``: the wire values it shows (:func:`display_layers`); a preview's
    carries ``partial=True`` too. Results cover every node, display nodes included
    (their status only).
    """
    previews: dict[str, _Previews] = {}  # partitioned node -> its previews while it runs
    try:
        return _execute(plan, runtime, cache, emit, superseded, previews)
    finally:
        for preview in previews.values():
            preview.close()


def _execute(
    plan: Plan,
    runtime: Runtime,
    cache: Cache,
    emit: Callable,
    superseded: Callable[[], bool],
    previews: dict[str, _Previews],
) -> tuple[dict[str, NodeResult], bool]:
    pipeline = plan.pipeline
    results: dict[str, NodeResult] = {}
    for n, why in plan.blocked.items():
        if why.state == "error":
            _finish(results.setdefault(n, NodeResult()), emit, n, "error", error={"message": why.message})
        else:
            _finish(results.setdefault(n, NodeResult()), emit, n, why.state, message=why.message)
    for n in plan.order:
        results[n] = NodeResult(key=plan.keys[n])
        emit(n, "queued")
    upstream = {n: {e.source.id for e in pipeline.inputs_of(n)} for n in plan.order}
    # Display node -> its producers that run; it is shown once they all have finished.
    displays = {
        n: {e.source.id for e in pipeline.inputs_of(n)} - plan.blocked.keys()
        for n, node in pipeline.nodes.items()
        if node.type == "display" and n not in plan.blocked
    }
    for n in displays:
        results[n] = NodeResult()
    display_ids = set(displays)
    _show_ready_displays(pipeline, displays, results, emit)

    to_compute = {n: plan.specs[n] for n in plan.order if cache.get(plan.keys[n]) is None}
    start_failures = _start_workers(runtime, to_compute, emit)

    in_flight: dict[Future, tuple[str, float]] = {}
    task_ids: dict[Future, str] = {}  # for cancel markers (C2)
    waiting = list(plan.order)
    cut_short = False
    while waiting or in_flight:
        if superseded() and not cut_short:
            cut_short = True
            for future in in_flight:  # newest wins: long operators stop at their next chunk
                runtime.cancel(task_ids[future])
            for preview in previews.values():
                preview.close()
        if not cut_short:
            for node_id in list(waiting):
                deps = [results[u] for u in upstream[node_id]]
                if any(d.status in ("error", "skipped") for d in deps):
                    waiting.remove(node_id)
                    bad = sorted(u for u in upstream[node_id] if results[u].status in ("error", "skipped"))
                    _finish(
                        results[node_id],
                        emit,
                        node_id,
                        "skipped",
                        error={"message": f"upstream {', '.join(bad)} failed"},
                    )
                    continue
                if not all(d.status in ("done", "cached") for d in deps):
                    continue
                waiting.remove(node_id)
                entry = cache.get(plan.keys[node_id])
                if entry is not None:
                    results[node_id].outputs = entry.outputs
                    _finish(results[node_id], emit, node_id, "cached", duration_s=entry.duration_s, cached=True)
                    continue
                failure = start_failures.get(node_id)
                if failure is not None:
                    _finish(results[node_id], emit, node_id, "error", error=failure.to_dict())
                    continue
                task = Task(
                    id=_task_id(),
                    node=node_id,
                    spec=plan.specs[node_id],
                    slot=node_id,
                    extra=pipeline.nodes[node_id].extra,
                    params=plan.params[node_id],
                    inputs={
                        e.target.port: results[e.source.id].outputs[e.source.port] for e in pipeline.inputs_of(node_id)
                    },
                )
                results[node_id].status = "running"
                emit(node_id, "running")
                task.on_progress = lambda fraction, message, n=node_id: emit(
                    n, "running", progress=fraction, message=message
                )
                on_partial = None
                if partitions.lazy_split(task) is not None:
                    chain, shown = _preview_route(plan, display_ids, node_id)
                    if shown:
                        previews[node_id] = _Previews(plan, node_id, chain, shown, runtime, results, emit)
                        on_partial = previews[node_id].offer
                # A lazy dataset: on several workers, its partial results previewed as they come.
                future = partitions.submit(runtime, task, on_partial)
                in_flight[future], task_ids[future] = (node_id, time.perf_counter()), task.id
            _show_ready_displays(pipeline, displays, results, emit)
        elif waiting:
            waiting.clear()  # never started: the newer run decides about them
        if not in_flight:
            if waiting and not cut_short:
                raise RuntimeError(f"scheduler stalled with {waiting} waiting")  # a bug, never a hang
            continue
        # Bounded, so that a newer request is noticed (and cancels) while a long task runs.
        done, _ = wait(list(in_flight), timeout=_CANCEL_POLL, return_when=FIRST_COMPLETED)
        for future in done:
            node_id, started = in_flight.pop(future)
            runtime.clear_cancel(task_ids.pop(future))
            if node_id in previews:  # its last partial event is out before its final result
                previews.pop(node_id).close()
            elapsed = time.perf_counter() - started
            try:
                result = future.result()
            except NodeFailure as failure:
                _finish(results[node_id], emit, node_id, "error", duration_s=elapsed, error=failure.to_dict())
                continue
            except Exception as e:  # a runtime bug still becomes a visible node error
                _finish(results[node_id], emit, node_id, "error", duration_s=elapsed, error={"message": repr(e)})
                continue
            entry = cache.put(Entry(plan.keys[node_id], result.outputs, elapsed))
            results[node_id].outputs = entry.outputs
            _finish(results[node_id], emit, node_id, "done", duration_s=elapsed)
        _show_ready_displays(pipeline, displays, results, emit)
    return results, cut_short


def _show_ready_displays(
    pipeline: Pipeline, displays: dict[str, set[str]], results: dict[str, NodeResult], emit: Callable
) -> None:
    """Finish (and forget) each display whose producers have all finished: ``done`` with its layers.

    A display none of whose producers gave a value is ``skipped`` (its last picture stays).
    """
    finished = ("done", "cached", "error", "skipped")
    for node_id, producers in list(displays.items()):
        if not all(results[p].status in finished for p in producers):
            continue
        del displays[node_id]
        layers = display_layers(pipeline, node_id, results)
        failed = sorted(p for p in producers if results[p].status in ("error", "skipped"))
        if not layers and failed:
            error = {"message": f"upstream {', '.join(failed)} failed"}
            _finish(results[node_id], emit, node_id, "skipped", error=error)
        else:
            _finish(results[node_id], emit, node_id, "done", layers=layers)


def _preview_route(plan: Plan, displays: set[str], node: str) -> tuple[list[str], list[str]]:
    """The operators between ``node`` and the displays it leads to (in order), and those displays."""
    pipeline = plan.pipeline
    feeds: dict[str, set[str]] = {}
    for e in pipeline.edges:
        feeds.setdefault(e.source.id, set()).add(e.target.id)
    after = plan.order[plan.order.index(node) + 1 :]
    below = {node}
    for n in after:  # topological: every path from node runs forward
        if any(e.source.id in below for e in pipeline.inputs_of(n)):
            below.add(n)
    shown = {d for d in displays if any(d in feeds.get(n, ()) for n in below)}
    useful: set[str] = set()  # operators below node from which a shown display is reached
    for n in reversed(after):
        if n in below and feeds.get(n, set()) & (shown | useful):
            useful.add(n)
    return [n for n in after if n in useful], sorted(shown)


class _Previews:
    """Preview runs of one partitioned node's partial results, through to the displays it leads to.

    ``offer`` (from the partitions' thread) keeps the newest partial result; one thread,
    started by the first, runs it: the partial values go into shared memory, each
    operator of ``chain`` runs on its warm worker (``runtime.submit``, as the real run
    will; not cached) when its inputs are there, and each display in ``shown`` whose
    inputs all have a value emits ``done`` with ``layers`` and ``partial=True``
    (``progress``: the share of partitions done). Then everything the preview made is
    freed, and the thread rests as long as the preview took. An operator whose worker
    is not up, that gets a lazy input or fails is left out of the preview, and so is
    what needs it; so is a stateful operator (``stateful`` in operator.json), whose
    state a preview must not change. :meth:`close` stops it all.
    """

    def __init__(
        self,
        plan: Plan,
        node: str,
        chain: list[str],
        shown: list[str],
        runtime: Runtime,
        results: dict[str, NodeResult],
        emit: Callable,
    ):
        self.plan, self.node, self.chain, self.shown = plan, node, chain, shown
        self.runtime, self.results, self.emit = runtime, results, emit
        self._cond = threading.Condition()
        self._next: tuple[dict[str, tuple[Any, dict[str, Any]]], int, int] | None = None
        self._task: str | None = None  # the preview task running, for cancel
        self._closed = False
        self._thread: threading.Thread | None = None

    def offer(self, values: dict[str, tuple[Any, dict[str, Any]]], done: int, total: int) -> None:
        """Take a newer partial result (an older one not yet previewed is dropped)."""
        with self._cond:
            if self._closed:
                return
            self._next = (values, done, total)
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=f"oremda-preview-{self.node}", daemon=True)
                self._thread.start()
            self._cond.notify()

    def close(self) -> None:
        """Drop what waits, cancel the preview task running and wait until the preview has ended (idempotent)."""
        with self._cond:
            self._closed, self._next = True, None
            self._cond.notify()
            if self._task is not None:
                self.runtime.cancel(self._task)
            thread = self._thread
        if thread is not None:
            thread.join()

    def _serve(self) -> None:
        while True:
            with self._cond:
                while self._next is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                values, done, total = self._next
                self._next = None
            made: list[str] = []  # objects of this preview, freed once its events are out
            started = time.perf_counter()
            try:
                self._preview(values, done, total, made)
            except Exception:  # a preview is only a preview: the real run reports errors
                log.debug("preview of %s failed", self.node, exc_info=True)
            finally:
                for name in made:
                    self.runtime.arena.free(name)
            with self._cond:  # previews take at most half the time: a slow one leaves the rest to the partitions
                self._cond.wait_for(lambda: self._closed, timeout=time.perf_counter() - started)

    def _preview(self, values: dict[str, tuple[Any, dict[str, Any]]], done: int, total: int, made: list[str]) -> None:
        pipeline, arena = self.plan.pipeline, self.runtime.arena
        preview_id = _task_id()
        outputs: dict[str, dict[str, dict[str, Any]]] = {self.node: {}}
        for port, (value, meta) in values.items():
            outputs[self.node][port] = wire = partitions.store(arena, value, meta, f"{preview_id}--{port}")
            if wire.get("ref"):
                made.append(wire["ref"]["name"])
        for node_id in self.chain:
            inputs = {}
            for e in pipeline.inputs_of(node_id):
                given = outputs.get(e.source.id) or self._finished(e.source.id)
                if given is None or e.source.port not in given or lazy.from_wire(given[e.source.port]):
                    break
                inputs[e.target.port] = given[e.source.port]
            else:
                spec = self.plan.specs[node_id]
                if spec.stateful or not self.runtime.serves(node_id, spec):  # a preview must not change its state
                    continue
                task = Task(_task_id(), node_id, spec, self.plan.params[node_id], inputs,
                            slot=node_id, extra=pipeline.nodes[node_id].extra)  # fmt: skip
                result = self._run(task)
                if result is None:
                    continue
                outputs[node_id] = result.outputs
                # What the task made (an input it returned unchanged keeps its own name).
                made += [w["ref"]["name"] for w in result.outputs.values() if _made_by(w, task.id)]
        finished = {n: NodeResult("done", outputs=o) for n, o in outputs.items()}
        for display in self.shown:
            edges = pipeline.inputs_of(display)
            if all(e.source.port in (outputs.get(e.source.id) or self._finished(e.source.id) or {}) for e in edges):
                layers = display_layers(pipeline, display, {**self.results, **finished})
                with self._cond:
                    if self._closed:
                        return
                self.emit(display, "done", layers=layers, partial=True, progress=done / total,
                          message=f"{done}/{total} partitions")  # fmt: skip

    def _finished(self, node_id: str) -> dict[str, dict[str, Any]] | None:
        """The outputs of a node of the real run that has finished, else None."""
        result = self.results.get(node_id)
        return result.outputs if result is not None and result.status in ("done", "cached") else None

    def _run(self, task: Task) -> TaskResult | None:
        """Run one preview task (None: closed meanwhile, or it failed)."""
        with self._cond:
            if self._closed:
                return None
            self._task = task.id
        try:
            return self.runtime.submit(task).result()
        except Exception:
            log.debug("preview task of %s failed", task.node, exc_info=True)
            return None
        finally:
            with self._cond:
                self._task = None
            self.runtime.clear_cancel(task.id)


def _task_id() -> str:
    """A task id unique in this process and among the engines sharing a session."""
    return f"t{next(_task_ids)}-{os.getpid()}"


def _made_by(wire: dict[str, Any], task_id: str) -> bool:
    """Whether an output wire value is an object task ``task_id`` made (``<task>--<port>``)."""
    return bool(wire.get("ref")) and wire["ref"]["name"].startswith(f"{task_id}--")


def _start_workers(runtime: Runtime, slots: dict[str, OperatorSpec], emit: Callable) -> dict[str, NodeFailure]:
    """One warm worker per node that must compute; only missing ones are launched."""
    missing = {slot: spec for slot, spec in slots.items() if not runtime.serves(slot, spec)}
    if not missing:
        return {}
    emit(None, "starting", message=f"starting {len(missing)} worker(s) for {', '.join(sorted(missing))}")
    # Slots are node ids: what the runtime says while preparing a worker is that node's news.
    runtime.progress_callback = lambda slot, message: emit(slot, "preparing", message=message)
    try:
        failures = runtime.start(missing)
    finally:
        runtime.progress_callback = None
    emit(None, "started", message=f"{len(missing) - len(failures)} worker(s) ready")
    return failures


def _finish(result: NodeResult, emit: Callable, node_id: str, state: str, **fields: Any) -> None:
    result.status = state
    result.duration_s = fields.get("duration_s")
    result.cached = fields.get("cached", False)
    result.error = fields.get("error")
    result.message = fields.get("message", "")
    emit(node_id, state, **fields)


def _fingerprint(path: Path) -> str:
    """Size and modification time: cheap, and changes when the file does."""
    try:
        st = path.stat()
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"
