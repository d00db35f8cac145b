"""PipelineEditor: the notebook editor widget (anywidget; front end in ``js/``).

State and policy
----------------
* The :class:`~oremda_lab.spec.pipeline.Pipeline` is the truth. The ``graph`` trait is
  always ``pipeline.to_json()``: the editor observes the pipeline and re-sends the graph
  after every edit, wherever it came from (the canvas, code, a slider).
* The front end only *proposes*: it sends ``{"type": "command", "id", "command"}``
  messages; :meth:`PipelineEditor.apply` maps each command to one ``Pipeline`` method,
  which validates, and the reply carries the problems when it is refused. Every request
  with an id gets exactly one reply with that id (the front end gives up after a
  timeout and shows the failure). ``{"type": "sync", "id"}`` re-sends the pipeline and
  run state: the front end asks for it when the kernel answers again after a lost reply;
  ``{"type": "run", "id"}`` submits now (the Run button when ``auto_run`` is off).
  Requests come over the comm, or (``direct``) over the direct path that skips the
  kernel's shell channel (:mod:`oremda_lab.widget.direct`): one handler answers both.
  Undo/redo lives in the front end as a stack of accepted commands and their inverses.
* Every edit that changes what runs (not a moved node) submits a snapshot to the
  engine; the engine coalesces (newest wins) and reports :class:`NodeEvent` s from its
  scheduler thread, which become the ``status`` and ``run`` traits. A display node's
  ``done`` event carries its layers: it goes to the ``displays`` trait at once (see
  ``_display.py``), not at the end of the run. A partial graph is submitted too: what
  can run runs, the rest reports ``waiting``.
* Several editors may share one engine: each submits in its own lane (newest wins only
  among its own runs) and listens only to the events of its own runs.
* Callbacks never raise into the kernel's message loop: failures show in the widget.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anywidget
import traitlets as t

from oremda_lab.examples import example_pipelines
from oremda_lab.registry import Registry, default_registry
from oremda_lab.spec.pipeline import Pipeline, PipelineError
from oremda_lab.widget import _display
from oremda_lab.widget import direct as direct_path
from oremda_lab.widget.params import operator_info, param_widget

__all__ = ["PipelineEditor"]

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
BUNDLE = STATIC / "editor.js"
#: Node status changes are sent at most this often while a run is going (the end is sent at once).
STATUS_INTERVAL_S = 0.1
# Changes of one parameter closer together than this are one movement (the front end's
# GESTURE_MS): while it moves, pictures go coarser (``preview_bin``).
GESTURE_S = 1.0
# The hand stopped: this long after a moving run's end with no newer run, its pictures go
# again at full display size.
REFINE_S = 0.3
_MISSING_BUNDLE = """
export default { render({ el }) {
  el.textContent = "oremda-lab: the editor bundle is missing; run `npm ci && npm run build` in the source tree.";
} };
"""


def _bundle() -> str | Path:
    # anywidget reads a Path (and watches it in development); without a build, say so.
    return BUNDLE if BUNDLE.exists() else _MISSING_BUNDLE


class PipelineEditor(anywidget.AnyWidget):
    """Edit, run and watch a pipeline in a notebook.

    Parameters
    ----------
    pipeline_or_json
        A :class:`Pipeline` (edited in place and shared with the caller), a JSON
        document (dict or text), a path to a JSON file, or None for an empty pipeline.
    engine
        The :class:`~oremda_lab.engine.Engine` that runs it (may be shared by several
        editors); by default one is made on :func:`oremda_lab.runtime.default_runtime`
        (and closed with the editor).
    auto_run
        Submit a run after every edit that changes the result; when False the toolbar
        shows a Run button (:meth:`run_now`). Can be changed later (``editor.auto_run``).
    registry
        Operators offered in the palette (default: the engine's, which includes the
        operator images of a Docker or Podman engine; else the shipped library).
    height
        Height of the canvas in pixels.
    picture_max_px
        Pictures larger than this (per side) are block-averaged by an integer factor
        before they are sent to the browser (None: always full size).
    preview_bin
        While one parameter moves (changes less than ``GESTURE_S`` apart, e.g. a slider
        dragged or stepped by keys), pictures are block-averaged by this factor more: a
        quarter of the bytes at 2, so each step reaches the screen sooner. ``REFINE_S``
        after the hand stops, the last run's pictures go again at full display size. The
        run itself is always exact and full resolution; 1 turns previews off.
    direct_requests
        Send the editor's requests over the direct path (:mod:`oremda_lab.widget.direct`)
        where the front end can reach it, instead of the comm: each request then spares
        the page the kernel's busy/idle statuses. The front end falls back to the comm by
        itself; False always uses the comm.
    examples
        The toolbar's Examples menu: name -> pipeline (a path, JSON dict or Pipeline).
        Default: the bundled example pipelines (:func:`oremda_lab.examples.example_pipelines`).

    Examples
    --------
    >>> editor = PipelineEditor({"nodes": [], "edges": []}, auto_run=False)
    >>> editor.pipeline.add_node("oremda/gaussian_blur", id="blur").id
    'blur'
    >>> [n["id"] for n in editor.graph["nodes"]]
    ['blur']
    >>> editor.close()
    """

    _esm = _bundle()
    _css = STATIC / "editor.css" if (STATIC / "editor.css").exists() else ""

    graph = t.Dict().tag(sync=True)
    operators = t.List().tag(sync=True)
    status = t.Dict().tag(sync=True)
    run = t.Dict({"state": "idle"}).tag(sync=True)
    displays = t.Dict().tag(sync=True)
    height = t.Int(460).tag(sync=True)
    auto_run = t.Bool(True).tag(sync=True)
    examples = t.List().tag(sync=True)
    filename = t.Unicode("pipeline.json").tag(sync=True)
    #: Where the front end sends requests when it can: {"socket", "key"} (empty: the comm).
    direct = t.Dict().tag(sync=True)

    def __init__(
        self,
        pipeline_or_json: Pipeline | dict | str | Path | None = None,
        engine: Any = None,
        *,
        auto_run: bool = True,
        registry: Registry | None = None,
        height: int = 460,
        picture_max_px: int | None = 512,
        preview_bin: int = 2,
        direct_requests: bool = True,
        examples: Mapping[str, Pipeline | dict | str | Path] | None = None,
        **kwargs: Any,
    ):
        # The engine's registry knows its runtime's operator images too (palette and validation).
        self._registry = registry or getattr(engine, "registry", None) or default_registry()
        self._pipeline = _as_pipeline(pipeline_or_json, self._registry)
        self._lock = threading.RLock()
        self._syncing = False
        self._batching = 0
        self._submitted_key: str | None = None
        self._pending_status: dict[str, dict[str, Any]] = {}
        self._command_at: float | None = None
        self._status_timer: threading.Timer | None = None
        self._display_revision = 0
        self._owns_engine = engine is None
        self._engine = engine
        # This editor's runs (the engine may be shared): run id -> the snapshot's problems
        # (nodes that wait or are invalid; the rest runs) and the displays already sent.
        self._runs: dict[int, _RunView] = {}
        self.picture_max_px = picture_max_px
        self.preview_bin = preview_bin
        # Movement: the parameters of the last submitted run, and the last single change.
        self._params: dict[tuple[str, str], Any] = {}
        self._last_change: tuple[tuple[str, str], float] | None = None
        self._submissions = 0
        self._refine_timer: threading.Timer | None = None
        self._direct: tuple[direct_path.DirectServer, str] | None = None
        super().__init__(
            graph=self._pipeline.to_json(),
            operators=[operator_info(s) for s in self._registry.all()],
            height=height,
            auto_run=auto_run,
            examples=_examples(example_pipelines() if examples is None else examples, self._registry),
            **kwargs,
        )
        self._unobserve = self._pipeline.observe(self._on_pipeline)
        self._unsubscribe = None
        self.on_msg(self._on_msg)
        self.direct_requests = direct_requests
        self.observe(self._on_graph_trait, "graph")
        self.observe(self._on_auto_run, "auto_run")
        if auto_run:
            self._resubmit()

    # -- public API --------------------------------------------------------------------

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline being edited (the same object that was passed in)."""
        return self._pipeline

    @property
    def engine(self) -> Any:
        """The engine that runs the pipeline (made on first use when none was given)."""
        if self._engine is None:
            from oremda_lab.engine import Engine

            # No runtime named: Engine() takes oremda_lab.runtime.default_runtime() (OREMDA_RUNTIME,
            # else the Jupyter config, else local).
            self._engine = Engine()
        if self._unsubscribe is None:
            self._unsubscribe = self._engine.subscribe(self._on_event)
        return self._engine

    def slider(self, node: str, param: str, **kwargs: Any) -> Any:
        """A standard ipywidget bound to one parameter (see :func:`param_widget`).

        >>> editor = PipelineEditor({"nodes": [{"id": "b", "image": "oremda/gaussian_blur"}], "edges": []},
        ...                         auto_run=False)
        >>> s = editor.slider("b", "sigma")
        >>> s.value = 4.5
        >>> editor.graph["nodes"][0]["params"]
        {'sigma': 4.5}
        >>> editor.close()
        """
        return param_widget(self._pipeline, node, param, **kwargs)

    def run_now(self) -> Any:
        """Submit the pipeline now, whatever ``auto_run`` says (the toolbar's Run button).

        Returns the :class:`~oremda_lab.engine.RunFuture`, or None when nothing was
        submitted (the run bar then says why, e.g. the pipeline's problems).
        """
        self._submitted_key = None
        return self._resubmit()

    def apply(self, command: dict[str, Any]) -> None:
        """Apply one front-end command through :class:`Pipeline` methods.

        A ``batch`` is all or nothing. Raises :class:`PipelineError` (or KeyError,
        ValueError) saying why a command is refused.
        """
        op = command.get("op")
        p = self._pipeline
        if op == "add_node":
            p.add_node(
                command.get("image"),
                id=command.get("id"),
                display=command.get("display"),
                params=command.get("params") or None,
                position=command.get("position"),
            )
        elif op == "remove_node":
            p.remove_node(command["id"])
        elif op == "connect":
            p.connect(command["from"]["id"], command["from"]["port"], command["to"]["id"], command["to"]["port"])
        elif op == "disconnect":
            p.disconnect(command["from"]["id"], command["from"]["port"], command["to"]["id"], command["to"]["port"])
        elif op == "set_param":
            p.set_param(command["id"], command["name"], command["value"])
        elif op == "set_position":
            p.set_position(command["id"], command["x"], command["y"])
        elif op == "layout":
            with self._batch():
                for node, pos in command["positions"].items():
                    if node in p.nodes:
                        p.set_position(node, pos["x"], pos["y"])
        elif op == "replace":
            p.replace(Pipeline.from_json(command["graph"], catalog=self._registry))
        elif op == "batch":
            before = p.to_json()
            with self._batch():
                try:
                    for sub in command["commands"]:
                        self.apply(sub)
                except Exception:
                    p.replace(Pipeline.from_json(before, catalog=self._registry))
                    raise
        else:
            raise ValueError(f"unknown editor command {op!r}")

    def close(self) -> None:
        """Close the widget; stop observing; close the engine if the editor made it."""
        self._unobserve()
        self.direct_requests = False
        for timer in (self._status_timer, self._refine_timer):
            if timer is not None:
                timer.cancel()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._owns_engine and self._engine is not None:
            self._engine.close()
            self._engine = None
        super().close()

    # -- pipeline <-> graph trait ------------------------------------------------------

    def _batch(self):
        editor = self

        class _Batch:
            def __enter__(self):
                editor._batching += 1

            def __exit__(self, *exc):
                editor._batching -= 1
                if editor._batching == 0:
                    editor._on_pipeline(editor._pipeline)

        return _Batch()

    def _on_pipeline(self, pipeline: Pipeline) -> None:
        if self._batching:
            return
        # The new run state and the graph go to the browser in one message (one render there).
        with self._lock, self.hold_sync():
            if self.auto_run:
                self._resubmit()  # first: the run starts while the graph goes to the browser
            elif _run_key(pipeline) != self._submitted_key:
                self._set_run("idle", message="edited since the last run: press Run")
            self._syncing = True
            try:
                self.graph = pipeline.to_json()
            finally:
                self._syncing = False

    def _on_graph_trait(self, change: dict[str, Any]) -> None:
        # Someone set ``editor.graph`` from Python (or restored state): adopt it.
        if self._syncing or change["new"] == self._pipeline.to_json():
            return
        try:
            self._pipeline.replace(Pipeline.from_json(change["new"], catalog=self._registry))
        except PipelineError as e:
            self._set_run("error", message=f"graph refused: {e}")
            self._syncing = True
            try:
                self.graph = self._pipeline.to_json()
            finally:
                self._syncing = False

    @property
    def direct_requests(self) -> bool:
        """True while the front end may send requests over the direct path (see ``direct_requests=``)."""
        return self._direct is not None

    @direct_requests.setter
    def direct_requests(self, on: bool) -> None:
        if on and self._direct is None:
            try:
                loop = asyncio.get_running_loop()  # the kernel's loop, in a notebook cell
            except RuntimeError:
                return  # a script, a thread: the comm only
            server = direct_path.server_for(loop)
            if server is not None:
                key = server.register(self._answer)
                self._direct = (server, key)
                self.direct = server.info(key)
        elif not on and self._direct is not None:
            server, key = self._direct
            self._direct = None
            server.unregister(key)
            self.direct = {}

    def _on_msg(self, _widget: Any, content: dict[str, Any], _buffers: list) -> None:
        if not isinstance(content, dict) or "id" not in content:
            return  # not a request: nobody waits for an answer
        self.send(self._answer(content))

    def _answer(self, content: dict[str, Any]) -> dict[str, Any]:
        """Handle one request (from the comm or the direct path) and return its reply."""
        if not isinstance(content, dict) or "id" not in content:
            return {"type": "reply", "id": None, "ok": False, "problems": ["a request needs an id"]}
        reply: dict[str, Any] = {"type": "reply", "id": content["id"], "ok": True, "problems": []}
        try:
            kind = content.get("type")
            if kind == "command":
                self._command_at = time.perf_counter()
                self.apply(content["command"])
            elif kind == "sync":
                with self._lock:
                    self.send_state(["graph", "status", "run"])
            elif kind == "run":
                self.run_now()
            else:
                raise ValueError(f"unknown editor request {kind!r}")
        except PipelineError as e:
            reply.update(ok=False, problems=[str(p) for p in e.problems])
        except (KeyError, ValueError, TypeError) as e:
            reply.update(ok=False, problems=[_message(e)])
        except Exception as e:  # never into the kernel's message loop: show it in the widget
            log.exception("editor command failed: %s", content)
            reply.update(ok=False, problems=[f"internal error: {_message(e)}"])
        return reply

    # -- running -----------------------------------------------------------------------

    def _on_auto_run(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self._resubmit()

    def _resubmit(self) -> Any:
        key = _run_key(self._pipeline)
        if key == self._submitted_key:
            return None  # only positions changed
        self._submitted_key = key
        self._submissions += 1
        if self._refine_timer is not None:
            self._refine_timer.cancel()  # still moving: no full-size pictures of the last run
            self._refine_timer = None
        moving = self._moving()
        if not self._pipeline.nodes:
            self._set_run("idle")
            return None
        # A partial graph runs too: nodes whose inputs are satisfied run, the others report
        # `waiting` (or their own error); the run bar lists what is missing meanwhile.
        view = _RunView([str(p) for p in self._pipeline.validate()], self.preview_bin if moving else 1)
        # Say "running" before submitting: a fast run may finish before submit returns.
        self._set_run("running", message="running…", **view.fields())
        engine = self.engine
        try:
            # Under the lock: the scheduler thread's first events of this run wait in
            # _on_event until its id is known to be this editor's.
            with self._lock:
                future = engine.submit(self._pipeline, lane=id(self))
                self._runs[future.run_id] = view
        except PipelineError as e:
            self._set_run("invalid", problems=[str(p) for p in e.problems])
            return None
        except Exception as e:
            log.exception("submit failed")
            self._set_run("error", message=_message(e))
            return None
        future.add_done_callback(self._on_done)
        return future

    def _moving(self) -> bool:
        """True when this run changes the same one parameter as the last, less than GESTURE_S later."""
        params = {(n.id, k): v for n in self._pipeline.nodes.values() for k, v in n.params.items()}
        # Nodes or parameters added or removed: an edit of the graph, not a movement.
        same_keys = params.keys() == self._params.keys()
        changed = [k for k in params if same_keys and params[k] != self._params[k]]
        now, last = time.perf_counter(), self._last_change
        self._params = params
        self._last_change = (changed[0], now) if len(changed) == 1 else None
        return len(changed) == 1 and last is not None and last[0] == changed[0] and now - last[1] < GESTURE_S

    def _on_event(self, event: Any) -> None:
        # Node events are batched: at most one ``status`` message per STATUS_INTERVAL_S, and
        # the run's end sends status, displays and run state together (one message). A
        # message per event would make the browser re-render a dozen times per slider step.
        try:
            with self._lock:
                view = self._runs.get(event.run_id)
                if view is None:
                    return  # another editor's run on a shared engine
                if event.node is None:
                    if event.state == "starting":
                        self._set_run("starting", message=event.message or "starting workers…", **view.fields())
                    elif event.state == "started":
                        self._set_run("running", message=event.message or "running…", **view.fields())
                    return
                if event.state == "done" and event.layers is not None:
                    # Progressive: a display shows as soon as its producers are done; a partial
                    # one (a preview while partitions complete) says how far it got.
                    self._show_display(event.node, list(event.layers), view, event.message if event.partial else None)
                self._pending_status[event.node] = _node_status(event.state, event, event.progress)
                if self._status_timer is None:
                    self._status_timer = threading.Timer(STATUS_INTERVAL_S, self._flush_status)
                    self._status_timer.daemon = True
                    self._status_timer.start()
        except Exception:
            log.exception("editor failed on %s", event)

    def _show_display(self, node_id: str, layers: list[Any], view: _RunView, partial: str | None = None) -> None:
        node = self._pipeline.nodes.get(node_id)
        if node is None or node.type != "display":
            return
        self._display_revision += 1
        payload = self._encode(node, layers)
        if partial is None:
            view.shown.add(node_id)  # final: the run's end need not send it again
            payload = view.coarse(node_id, payload)
        else:
            payload["partial"] = partial or "partial"  # the run's end sends the final picture
        self.displays = {**self.displays, node_id: payload}

    def _encode(self, node: Any, layers: list[Any]) -> dict[str, Any]:
        return _display.encode(node, layers, self._display_revision, self.picture_max_px)

    def _flush_status(self) -> None:
        with self._lock:
            self._status_timer = None
            if self._pending_status:
                self.status = {**self.status, **self._pending_status}
                self._pending_status = {}

    def _on_done(self, future: Any) -> None:
        with self._lock:
            view = self._runs.pop(future.run_id, None) or _RunView([])
        try:
            run = future.result()
        except Exception as e:
            self._set_run("error", message=_message(e))
            return
        if run.superseded:
            return
        try:
            with self._lock, self.hold_sync():
                if self._status_timer is not None:
                    self._status_timer.cancel()
                    self._status_timer = None
                self._pending_status = {}
                self._display_revision += 1
                shown = {}
                for node_id, layers in run.displays.items():
                    node = run.pipeline.nodes.get(node_id)
                    if node is None:
                        continue
                    old = self.displays.get(node_id)
                    if node_id in view.shown and old is not None:
                        shown[node_id] = old  # sent during the run (progressive): not again
                    elif not layers and old and old.get("layers"):
                        # Upstream failed or waits: keep the last picture, marked stale, rather than a blank.
                        shown[node_id] = {**old, "stale": True}
                    else:
                        shown[node_id] = view.coarse(node_id, self._encode(node, layers))
                self.status = {n: _node_status(r.status, r) for n, r in run.nodes.items()}
                self.displays = shown
                errors = run.errors
                if errors:
                    first = next(iter(errors.items()))
                    self._set_run("error", message=f"{first[0]}: {first[1].get('message', 'failed')}", **view.fields())
                else:
                    # kernel_s: from the last front-end command to these results (latency work).
                    kernel_s = time.perf_counter() - self._command_at if self._command_at else None
                    self._set_run("done", elapsed_s=run.duration_s, kernel_s=kernel_s, **view.fields())
                if view.full:
                    self._refine_timer = threading.Timer(REFINE_S, self._refine, (view.full, self._submissions))
                    self._refine_timer.daemon = True
                    self._refine_timer.start()
        except Exception as e:
            log.exception("editor could not show run results")
            self._set_run("error", message=f"cannot show results: {_message(e)}")

    def _refine(self, full: dict[str, dict[str, Any]], submission: int) -> None:
        """The hand stopped: the full-size pictures of the last run replace its previews."""
        with self._lock:
            if submission != self._submissions:
                return  # a newer run started: it sends its own pictures
            self._refine_timer = None
            self._display_revision += 1
            shown = {k: {**p, "revision": self._display_revision} for k, p in full.items() if k in self.displays}
            self.displays = {**self.displays, **shown}

    def _set_run(self, state: str, **fields: Any) -> None:
        with self._lock:
            new = {"state": state, **fields}
            if new != self.run:
                self.run = new


class _RunView:
    """What the editor keeps about one of its runs while it goes."""

    def __init__(self, problems: list[str], preview_bin: int = 1):
        self.problems = problems
        self.shown: set[str] = set()  # display nodes already sent during the run
        self.preview_bin = preview_bin
        self.full: dict[str, dict[str, Any]] = {}  # display -> full-size payload, sent when the hand stops

    def coarse(self, node_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """``payload`` as sent while a parameter moves: pictures ``preview_bin`` times coarser.

        The full payload is kept for the refinement (:data:`REFINE_S`).
        """
        preview = _display.coarser(payload, self.preview_bin)
        if preview is not payload:
            self.full[node_id] = payload
        return preview

    def fields(self) -> dict[str, Any]:
        """Extra fields of the ``run`` trait: the problems of a partial graph, if any."""
        return {"problems": self.problems} if self.problems else {}


def _node_status(state: str, source: Any, progress: float | None = None) -> dict[str, Any]:
    """A node's entry of the ``status`` trait, from a :class:`NodeEvent` or (run ended) a ``NodeResult``.

    ``message``: what a preparing node prepares, why a waiting one waits, a running one's progress.
    """
    return {
        "state": state, "duration_s": source.duration_s, "cached": bool(source.cached), "error": source.error,
        "message": source.message or None, "progress": progress,
    }  # fmt: skip


def _as_pipeline(source: Pipeline | dict | str | Path | None, registry: Registry) -> Pipeline:
    if isinstance(source, Pipeline):
        return source
    if source is None:
        return Pipeline(catalog=registry)
    if isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith("{")):
        return Pipeline.load(source, catalog=registry)
    return Pipeline.from_json(copy.deepcopy(source) if isinstance(source, dict) else source, catalog=registry)


def _examples(examples: Mapping[str, Pipeline | dict | str | Path], registry: Registry) -> list[dict[str, Any]]:
    """The Examples menu's entries; one that does not load is left out (and logged)."""
    out = []
    for name, source in examples.items():
        try:
            doc = _as_pipeline(source, registry).to_json()
        except (OSError, ValueError, PipelineError) as e:
            log.warning("example %s left out of the menu: %s", name, e)
            continue
        out.append({"name": name, "description": doc.get("description", ""), "graph": doc})
    return out


def _run_key(pipeline: Pipeline) -> str:
    """What a run depends on: the graph without editor positions."""
    doc = pipeline.to_json()
    for node in doc["nodes"]:
        node.pop("position", None)
    return json.dumps(doc, sort_keys=True, default=str)


def _message(e: BaseException) -> str:
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e) or type(e).__name__
