"""Engine: owns the runtime, the cache and the shared-memory arena; runs pipelines.

State and policy
----------------
* One scheduler thread runs one request at a time. ``submit`` only records the
  newest request of its *lane* and returns a future, so it never blocks a notebook kernel.
* Newest wins, per lane: a request waiting behind a running one is dropped when a newer
  one of the same lane arrives (its future resolves with ``superseded=True``); the
  running one stops submitting new tasks, lets in-flight tasks finish into the cache,
  and resolves superseded too. Rapid slider moves thus cost at most one extra task each.
  Requests of different lanes (two editors sharing one engine) queue and all run.
* Partial graphs run: only a problem of the document as a whole refuses a request;
  nodes that cannot run are reported (``waiting`` or ``error``) and the rest runs.
* After each completed run the cache keeps that run's outputs (and recent others within
  a byte budget); everything else goes back to the arena's pool.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import math
import platform
import threading
import time
import warnings
from collections.abc import Callable, Hashable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy

from oremda_lab._version import __version__
from oremda_lab.dataplane.arena import Arena
from oremda_lab.dataplane.refs import ObjectRef
from oremda_lab.engine import scheduler
from oremda_lab.engine.cache import DEFAULT_SPARE_BYTES, Cache
from oremda_lab.engine.events import NodeEvent
from oremda_lab.registry import Registry, default_registry, names_image
from oremda_lab.runtime import make_runtime
from oremda_lab.spec.operator import OperatorSpec, data_file, file_digest
from oremda_lab.spec.pipeline import Pipeline, PipelineError, Problem
from oremda_lab.worker.sdk import PortValue

log = logging.getLogger(__name__)
Subscriber = Callable[[NodeEvent], None]


class RunFuture(Future):
    """A future of a :class:`Run` that can also be awaited in a notebook cell.

    ``run_id`` is the id its :class:`NodeEvent` s carry, known before the run starts.
    """

    run_id: int = 0

    def __await__(self) -> Iterator[Any]:
        return asyncio.wrap_future(self).__await__()


@dataclass
class Run:
    """The result of running one pipeline snapshot.

    ``nodes`` has a :class:`~oremda_lab.engine.scheduler.NodeResult` per node (display
    nodes: their status only; a node that could not run: ``waiting`` with its
    ``message``, or ``error``); ``outputs[node][port]`` and ``displays[node]`` give
    :class:`PortValue`s whose data are zero-copy views of shared memory (valid while
    the engine is open).
    """

    id: int
    pipeline: Pipeline
    nodes: dict[str, scheduler.NodeResult] = field(default_factory=dict)
    superseded: bool = False
    duration_s: float = 0.0
    _provenance: dict[str, Any] = field(default_factory=dict)
    _arena: Arena | None = field(default=None, repr=False)
    _inputs: Callable[[], dict[str, str | None]] | None = field(default=None, repr=False)

    @property
    def provenance(self) -> dict[str, Any]:
        """Versions, runtime, operators, each node's digest and environment, parameters, input files.

        ``inputs`` maps each data file parameter (``node.param``) to the ``sha256:`` of
        the file's bytes, hashed on first access (not while the run goes: a large file
        would be read twice), if the file is still as the run found it (size and
        modification time); else it says that it changed since the run.
        """
        if self._inputs is not None:
            self._provenance["inputs"], self._inputs = self._inputs(), None
        return self._provenance

    @property
    def ok(self) -> bool:
        """Every node done or cached (none waiting or failed), and not superseded."""
        return not self.superseded and all(r.status in ("done", "cached") for r in self.nodes.values())

    @property
    def errors(self) -> dict[str, dict[str, Any]]:
        """Node id -> error, for nodes that failed (not those skipped behind them)."""
        return {n: r.error for n, r in self.nodes.items() if r.status == "error" and r.error}

    @property
    def waiting(self) -> dict[str, str]:
        """Node id -> what it waits for, for nodes that could not run (partial graphs)."""
        return {n: r.message for n, r in self.nodes.items() if r.status == "waiting"}

    @property
    def outputs(self) -> Mapping[str, Mapping[str, PortValue]]:
        """``outputs[node][port]`` -> PortValue (mapped from shared memory on access)."""
        return _Outputs(self)

    @property
    def displays(self) -> dict[str, list[PortValue]]:
        """Display node id -> its layers (PortValues with display meta), in z order."""
        return {
            node.id: [self.value(wire) for wire in scheduler.display_layers(self.pipeline, node.id, self.nodes)]
            for node in self.pipeline.nodes.values()
            if node.type == "display"
        }

    def value(self, wire: dict[str, Any]) -> PortValue:
        """A wire value (ref + meta) as a PortValue with a zero-copy view."""
        ref = wire.get("ref")
        data = None
        if ref is not None:
            if self._arena is None:
                raise RuntimeError("this run has no shared memory attached")
            try:
                data = self._arena.get(ObjectRef.from_dict(ref))
            except FileNotFoundError:
                raise RuntimeError("this output was freed: the engine closed or a later run replaced it") from None
        return PortValue(data, dict(wire.get("meta", {})))

    def record(self) -> dict[str, Any]:
        """The run record: per-node status and timings, errors, what waiting nodes wait for, provenance (JSON-ready).

        ``outputs[node][port]`` identifies each output's bytes (``dtype``, ``shape`` and
        the ``sha256`` of the C-ordered data), so two runs can be compared without their
        data; it needs the outputs, so take the record before the engine closes.
        """
        return {
            "run": self.id,
            "ok": self.ok,
            "superseded": self.superseded,
            "duration_s": self.duration_s,
            "nodes": {
                n: {
                    "status": r.status,
                    "duration_s": r.duration_s,
                    "cached": r.cached,
                    "error": r.error,
                    "message": r.message,
                    "key": r.key,
                }
                for n, r in self.nodes.items()
            },
            "outputs": {
                node: {port: _fingerprint(value.data) for port, value in self.outputs[node].items()}
                for node in self.outputs
            },
            "provenance": self.provenance,
            "pipeline": self.export_pipeline(),
        }

    def export_pipeline(self) -> dict[str, Any]:
        """The pipeline JSON pinned to what ran, with a ``provenance`` block.

        Each operator node is pinned: in containers its ``image`` becomes
        ``REPOSITORY@sha256:...`` when the image has a registry digest, else it keeps its
        local reference and gains ``image_id`` (the image id); on the local runtime the
        ``provenance["nodes"]`` digest (the operator folder's) and environment pin it.
        Running the export where the pinned operator is not available is an error.
        """
        doc = self.pipeline.to_json()
        pins = self.provenance.get("nodes", {})
        for node in doc["nodes"]:
            pin = pins.get(node["id"]) or {}
            if not pin.get("image_id"):
                continue
            if "@" in pin["image"]:
                node["image"] = pin["image"]
                node.pop("image_id", None)
            else:
                node["image_id"] = pin["image_id"]
        doc["provenance"] = self.provenance
        return doc

    def raise_for_errors(self) -> None:
        """Raise RuntimeError naming every failed node."""
        if self.errors:
            raise RuntimeError("; ".join(f"{n}: {e['message']}" for n, e in self.errors.items()))


def _fingerprint(data: Any) -> dict[str, Any] | None:
    """What identifies an output's value exactly: dtype, shape and the digest of its bytes."""
    if data is None:
        return None
    if isinstance(data, bytes):
        return {"dtype": "bytes", "shape": [len(data)], "sha256": hashlib.sha256(data).hexdigest()}
    array = numpy.ascontiguousarray(data)
    return {"dtype": array.dtype.str, "shape": list(array.shape), "sha256": hashlib.sha256(array.data).hexdigest()}


class _Outputs(Mapping):
    def __init__(self, run: Run):
        self._run = run

    def __getitem__(self, node: str) -> dict[str, PortValue]:
        result = self._run.nodes[node]
        return {port: self._run.value(wire) for port, wire in result.outputs.items()}

    def __iter__(self) -> Iterator[str]:
        return (n for n, r in self._run.nodes.items() if r.outputs)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Engine:
    """Runs pipelines on a runtime, incrementally, with warm workers.

    Parameters
    ----------
    runtime
        ``"local"``, ``"inline"``, ``"docker"``, ``"podman"``, ``"apptainer"`` or
        ``"mpi"``; None (default): :func:`oremda_lab.runtime.default_runtime` decides
        (``OREMDA_RUNTIME``, else the Jupyter config, else ``"local"``).
    data_dir
        Folder that file parameters (e.g. a reader's ``filename``) are relative to.
    timeout
        Seconds one node may run before its worker is killed (default 600).
    registry
        Where operators are found (default: the shipped library plus ``OREMDA_OPERATORS_PATH``).
        A runtime with an image catalog (Docker, Podman, Apptainer) adds its operator
        images after these folders: :attr:`registry` is that combined registry.
    cache_bytes
        Shared memory kept for outputs the latest run did not use.
    shm_bytes
        Shared memory the session may take in all (default: a byte count in
        ``OREMDA_SHM_BUDGET``, else none), within the limit all sessions on the shared
        memory keep together (see :func:`~oremda_lab.dataplane.arena.shm_limits`).
        A node whose output would pass it fails with "shared memory full".
    **runtime_options
        Passed to the runtime (e.g. ``ranks=4`` for MPI).

    Examples
    --------
    >>> with Engine() as engine:                               # doctest: +SKIP
    ...     run = engine.run(Pipeline.load("pipelines/blur_display.json"))
    ...     run.nodes["blur"].status
    'done'
    """

    def __init__(
        self,
        runtime: str | None = None,
        data_dir: str | Path | None = None,
        *,
        timeout: float | None = None,
        start_timeout: float | None = None,
        registry: Registry | None = None,
        cache_bytes: int = DEFAULT_SPARE_BYTES,
        shm_bytes: int | None = None,
        **runtime_options: Any,
    ):
        for name, seconds in (("timeout", timeout), ("start_timeout", start_timeout)):
            valid = isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0
            if seconds is not None and not valid:
                raise ValueError(f"{name} must be a positive number of seconds, not {seconds!r}")
        self.registry = registry or default_registry()
        self.data_dir = Path(data_dir).resolve() if data_dir else Path.cwd()
        self.arena = Arena.create(budget_bytes=shm_bytes)
        try:
            self.runtime = make_runtime(
                runtime,
                self.arena,
                data_dir=self.data_dir,
                timeout=timeout,
                start_timeout=start_timeout,
                **runtime_options,
            )
        except BaseException:
            self.arena.close()
            raise
        if self.runtime.catalog is not None:  # every operator image this runtime's engine holds is one too
            self.registry = self.registry.with_catalogs(self.runtime.catalog)
        self.cache = Cache(self.arena, cache_bytes)
        self._subscribers: list[Subscriber] = []
        self._run_ids = itertools.count(1)
        self._cond = threading.Condition()
        self._requests: dict[Hashable, tuple[Pipeline, RunFuture]] = {}  # lane -> its newest request
        self._closed = False
        self._file_hashes: dict[tuple[str, int, int], str] = {}
        self._thread = threading.Thread(target=self._loop, name="oremda-scheduler", daemon=True)
        self._thread.start()

    # -- public API --------------------------------------------------------------------

    def submit(self, pipeline: Pipeline, *, lane: Hashable = None) -> RunFuture:
        """Queue a run of a snapshot of ``pipeline``; returns at once.

        A newer submission of the same ``lane`` supersedes this one if it has not
        finished (newest wins); submissions of other lanes (e.g. another editor on this
        engine) wait their turn and run. Nodes that cannot run (an input not connected,
        an invalid parameter, an image that cannot be found or pulled) are reported as
        ``waiting`` or ``error`` events and results, and the rest of the graph runs.
        Raises :class:`~oremda_lab.spec.PipelineError` at once only for problems of the
        document as a whole, a pinned node whose operator is not the one it was pinned
        to, or an exported pipeline's input file that changed (:meth:`_check`). A
        pipeline naming images the runtime must pull first is checked after the pull,
        and its future raises that error instead.
        """
        if self._closed:
            raise RuntimeError("the engine is closed")
        snapshot = Pipeline.from_json(pipeline.to_json(), catalog=self.registry)
        if not self._images_to_pull(snapshot):
            self._check(snapshot)
        future = RunFuture()
        future.run_id = next(self._run_ids)
        with self._cond:
            dropped = self._requests.pop(lane, None)
            if dropped is not None:
                old_snapshot, old = dropped
                old.set_result(Run(old.run_id, old_snapshot, superseded=True, _arena=self.arena))
                self._emit(NodeEvent(old.run_id, None, "superseded"))
            self._requests[lane] = (snapshot, future)
            self._cond.notify()
        return future

    def run(self, pipeline: Pipeline, timeout: float | None = None, *, lane: Hashable = None) -> Run:
        """Run ``pipeline`` and wait for the result."""
        return self.submit(pipeline, lane=lane).result(timeout)

    def pull(self, pipeline: Pipeline) -> None:
        """Pull, now, the images ``pipeline``'s nodes name exactly that the runtime lacks.

        A run does this itself; call it first to edit a pulled operator's parameters
        before the run. Progress arrives as ``preparing`` events (run id 0); one
        :class:`~oremda_lab.spec.PipelineError` names every image that could not be pulled.
        """
        failed = self._pull(self._images_to_pull(Pipeline.from_json(pipeline.to_json(), catalog=self.registry)), 0)
        if failed:
            raise PipelineError([Problem(node_id, message) for node_id, message in failed.items()])

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` for every :class:`NodeEvent`; returns an unsubscribe function."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def close(self) -> None:
        """Stop workers, free shared memory, remove the session folder."""
        if self._closed:
            return
        self._closed = True
        with self._cond:
            self._cond.notify()
        try:
            # Workers first: a task still running fails at once instead of holding close().
            self.runtime.stop()
            self._thread.join(timeout=30)
        finally:
            self.cache.clear()
            self.arena.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the scheduler thread -------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._requests and not self._closed:
                    self._cond.wait()
                if self._closed:
                    for _, future in self._requests.values():
                        future.set_exception(RuntimeError("the engine was closed before this run started"))
                    self._requests.clear()
                    return
                lane = next(iter(self._requests))  # the lane waiting longest
                snapshot, future = self._requests.pop(lane)
            try:
                future.set_result(self._execute(snapshot, future.run_id, lane))
            except PipelineError as e:  # refused before running (a pull failed, a pin): the waiter's error
                future.set_exception(e)
            except BaseException as e:  # never let the loop die: report to the waiter
                log.exception("run %s failed", future.run_id)
                future.set_exception(e)

    def _execute(self, snapshot: Pipeline, run_id: int, lane: Hashable) -> Run:
        started = time.perf_counter()
        failed: dict[str, str] = {}
        missing = self._images_to_pull(snapshot)
        if missing:
            failed = self._pull(missing, run_id)
            self._check(snapshot)
        self._check_environments(snapshot)
        run = Run(run_id, snapshot, _arena=self.arena)
        blocked = snapshot.readiness({**self._unrunnable(snapshot), **failed}).blocked
        plan = scheduler.plan(snapshot, self.data_dir, self.runtime.image_digest, blocked)
        stamps = {where: _stamp(path) for where, path in plan.files.items()}  # the files as this run reads them

        def emit(node: str | None, state: str, **fields: Any) -> None:
            if fields.get("layers") is not None:  # a display's wire values, as views of shared memory
                fields["layers"] = tuple(run.value(wire) for wire in fields["layers"])
            self._emit(NodeEvent(run_id, node, state, **fields))

        run.nodes, run.superseded = scheduler.execute(
            plan, self.runtime, self.cache, emit, superseded=lambda: lane in self._requests
        )
        if not run.superseded:
            self.cache.retain({r.key for r in run.nodes.values() if r.key})
        run.duration_s = time.perf_counter() - started
        run._provenance = self._provenance(plan)
        run._inputs = lambda: self._input_digests(stamps)
        emit(None, "superseded" if run.superseded else "finished", duration_s=run.duration_s)
        return run

    def _emit(self, event: NodeEvent) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # a broken subscriber must not stop the engine
                log.exception("event subscriber failed on %s", event)

    # -- provenance -------------------------------------------------------------------------

    def _provenance(self, plan: scheduler.Plan) -> dict[str, Any]:
        import numpy
        import pyarrow

        return {
            "oremda_lab": __version__,
            "python": platform.python_version(),
            "numpy": numpy.__version__,
            "pyarrow": pyarrow.__version__,
            "runtime": self.runtime.name,
            "operators": {
                spec.name: {"version": spec.version, "digest": self.runtime.image_digest(spec)}
                for spec in plan.specs.values()
            },
            "nodes": {node_id: self._node_provenance(node_id, spec) for node_id, spec in plan.specs.items()},
            "inputs": {},  # filled on first access (Run.provenance)
            "params": plan.params,
        }

    def _node_provenance(self, node_id: str, spec: OperatorSpec) -> dict[str, Any]:
        """Operator, code digest, image, and the packages of the environment its worker ran in.

        Container runtimes add what names the image exactly (``image``: with its registry
        digest when it has one; ``image_id``), which :meth:`Run.export_pipeline` pins.
        """
        env = self.runtime.environment(node_id)
        return {
            "operator": spec.name,
            "version": spec.version,
            "digest": self.runtime.image_digest(spec),
            "image": spec.image,
            **self.runtime.image_pin(spec),
            "environment": {key: env.get(key) for key in ("id", "python", "packages")} if env else None,
        }

    def _input_digests(self, stamps: dict[str, tuple[Path, int, int] | None]) -> dict[str, str | None]:
        """Each data file's digest if it is as :func:`_stamp` found it during the run, else what changed."""
        digests: dict[str, str | None] = {}
        for where, stamp in stamps.items():
            now = _stamp(stamp[0]) if stamp is not None else None
            if stamp is None or now == stamp:
                digests[where] = self._file_hash(stamp[0]) if stamp is not None else None
            else:
                then = f"{stamp[1]} bytes modified at {stamp[2]} ns"
                later = f"{now[1]} bytes modified at {now[2]} ns" if now else "unreadable"
                digests[where] = f"changed since the run: {then} then, {later} now; not hashed"
        return digests

    def _file_hash(self, path: Path) -> str | None:
        """The digest of a planned data file (a regular file in the data folder), else None."""
        try:
            st = path.stat()
            memo = (str(path), st.st_size, st.st_mtime_ns)
            if memo not in self._file_hashes:
                self._file_hashes[memo] = file_digest(path)  # refuses, never blocks on, a swapped-in FIFO
        except (OSError, ValueError):
            return None
        return self._file_hashes[memo]

    # -- images and pins ------------------------------------------------------------------

    def _images_to_pull(self, pipeline: Pipeline) -> dict[str, str]:
        """Node -> the exact image it names that the runtime lacks and can pull."""
        return _unknown_images(pipeline) if self.runtime.can_pull else {}

    def _pull(self, images: dict[str, str], run_id: int) -> dict[str, str]:
        """Pull each image, as ``preparing`` events of its node; returns node -> why its pull failed."""
        failed = {}
        for node_id, image in images.items():
            try:
                self.runtime.pull(
                    image, lambda message, n=node_id: self._emit(NodeEvent(run_id, n, "preparing", message=message))
                )
            except LookupError as e:
                failed[node_id] = str(e)
            except Exception as e:  # the engine's own error text says more than any summary
                failed[node_id] = f"cannot pull {image}: {e}"
        return failed

    def _unrunnable(self, pipeline: Pipeline) -> dict[str, str]:
        """Node -> why this runtime cannot run it: an image it cannot pull, or an operator image it lacks.

        These become that node's error (its downstream waits); the rest of the graph runs.
        """
        why = {}
        if not self.runtime.can_pull:
            for node_id, image in _unknown_images(pipeline).items():
                why[node_id] = f"{image!r} names an image; use --runtime docker|podman to run it"
        for node_id, node in pipeline.nodes.items():
            spec = pipeline.spec(node_id) if node.type == "operator" else None
            if spec is None:
                continue
            try:
                self.runtime.image_digest(spec)
            except LookupError as e:
                why[node_id] = str(e)
        return why

    def _check(self, pipeline: Pipeline) -> None:
        """Refuse a document that cannot run at all, or a pinned node whose operator or input file changed.

        Problems of single nodes do not refuse: the rest of the graph runs (see
        :meth:`~oremda_lab.spec.pipeline.Pipeline.readiness`). A node is pinned by its
        ``image_id`` field, or by the digest its exported ``provenance["nodes"]`` block
        records (the image id in containers; the source digest of the operator folder on
        the local runtime): an export is reproduced exactly or not at all. Pipelines
        exported before per-node provenance only record ``provenance["operators"]``: a
        change there warns.
        """
        document = pipeline.readiness().problems
        if document:
            raise PipelineError(document)
        provenance = pipeline.extra.get("provenance") or {}
        pinned = provenance.get("nodes") or {}
        problems = []
        for node_id, node in pipeline.nodes.items():
            spec = pipeline.spec(node_id)
            then = node.extra.get("image_id") or (pinned.get(node_id) or {}).get("digest")
            if spec is None or not then:
                continue
            try:
                now = self.runtime.image_digest(spec)
            except LookupError as e:
                problems.append(Problem(node_id, f"pinned to {then}, which is not available: {e}"))
                continue
            if now != then:
                where = self.runtime.image_pin(spec).get("image", spec.path)
                ran = provenance.get("runtime", "another")
                problems.append(
                    Problem(
                        node_id,
                        f"pinned to {spec.name} {then} (ran on the {ran} runtime), but the {self.runtime.name} "
                        f"runtime would run {now} ({where}); run it where that digest is available, "
                        "or remove the pin (the node's image_id and provenance) to run the current one",
                    )
                )
        problems += self._changed_inputs(pipeline, provenance)
        if problems:
            raise PipelineError(problems)
        if not pinned:
            self._warn_on_provenance(pipeline)

    def _changed_inputs(self, pipeline: Pipeline, provenance: dict[str, Any]) -> list[Problem]:
        """Data files of an export whose bytes differ from those it recorded.

        A file parameter is pinned by its hash in ``provenance["inputs"]`` while it names
        the same file as then (``provenance["params"]``); naming another file is an edit.
        """
        problems = []
        for where, then in (provenance.get("inputs") or {}).items():
            node_id, _, param = where.rpartition(".")
            spec = pipeline.spec(node_id) if node_id in pipeline.nodes else None
            if spec is None or not then or not isinstance(then, str):
                continue
            name = spec.resolved_params(pipeline.nodes[node_id].params).get(param)
            if name != ((provenance.get("params") or {}).get(node_id) or {}).get(param):
                continue
            try:
                now = self._file_hash(data_file(self.data_dir, name)) or "unreadable"
            except (OSError, ValueError) as e:
                now = f"unusable ({e})"
            if now != then:
                problems.append(
                    Problem(
                        node_id,
                        f"input {param}={name!r} changed since this pipeline was exported: it was {then}, "
                        f"it is {now} in {self.data_dir}; restore that file, or remove the pin "
                        "(provenance.inputs) to run on the current one",
                    )
                )
        return problems

    def _check_environments(self, pipeline: Pipeline) -> None:
        """Refuse pinned nodes whose environment differs from the one recorded on this runtime.

        Runs on the scheduler thread: naming a local node's environment may create it.
        Only pins recorded by the same runtime are compared (a container's environment is
        its image, which :meth:`_check` compared already).
        """
        provenance = pipeline.extra.get("provenance") or {}
        if provenance.get("runtime") != self.runtime.name:
            return
        problems = []
        for node_id, pin in (provenance.get("nodes") or {}).items():
            then = ((pin or {}).get("environment") or {}).get("id")
            spec = pipeline.spec(node_id) if node_id in pipeline.nodes else None
            if spec is None or not then:
                continue
            try:
                now = self.runtime.environment_id(spec)
            except Exception as e:  # an environment that cannot be made is not the pinned one
                now = f"unavailable ({e})"
            if now != then:
                problems.append(
                    Problem(
                        node_id,
                        f"pinned to environment {then}, but {spec.name} would run in {now} here; "
                        "remove the pin (the node's provenance) to run in the current one",
                    )
                )
        if problems:
            raise PipelineError(problems)

    def _warn_on_provenance(self, pipeline: Pipeline) -> None:
        recorded = pipeline.extra.get("provenance", {}).get("operators", {})
        for node_id in pipeline.nodes:
            spec = pipeline.spec(node_id)
            if spec is None or spec.name not in recorded:
                continue
            then = recorded[spec.name].get("digest")
            try:
                now = self.runtime.image_digest(spec)
            except LookupError:  # that node's own error says so when it runs
                continue
            if then and then != now:
                warnings.warn(
                    f"operator {spec.name} changed since this pipeline was exported ({then[:19]} -> {now[:19]})",
                    stacklevel=3,
                )


def _stamp(path: Path) -> tuple[Path, int, int] | None:
    """A data file with its size and modification time (ns), or None if it cannot be stat'ed."""
    try:
        st = path.stat()
    except OSError:
        return None
    return path, st.st_size, st.st_mtime_ns


def _unknown_images(pipeline: Pipeline) -> dict[str, str]:
    """Node -> the exact image it names (a registry reference) that no known operator describes."""
    return {
        node_id: node.image
        for node_id, node in pipeline.nodes.items()
        if node.type == "operator" and node.image and names_image(node.image) and pipeline.spec(node_id) is None
    }
