"""The pipeline graph: nodes, edges, JSON round-trip and validation.

A :class:`Pipeline` is plain data. Every edit goes through one of its methods,
which keep it consistent, bump :attr:`Pipeline.revision` and notify observers
(the editor widget is one). Fields this version does not know are kept and
written back unchanged.

Examples
--------
>>> p = Pipeline.from_json({"nodes": [{"id": "a", "image": "oremda/tiff_reader"}],
...                         "edges": []})
>>> p.nodes["a"].operator_name
'tiff_reader'
>>> p.to_json()["version"]
1
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from oremda_lab.spec.operator import OperatorSpec, PortSpec
from oremda_lab.spec.upgrade import CURRENT_VERSION, upgrade

DISPLAY_PORT = "in"
DISPLAY_KINDS = ("1D", "2D")
MAX_ID_LENGTH = 128
# Deeper JSON is refused before anything walks it (recursive copies, encoders).
MAX_DEPTH = 64


class Catalog(Protocol):
    """Anything that resolves an image name (``oremda/<name>``) to its spec."""

    def lookup(self, image: str) -> OperatorSpec | None:
        """Return the spec of ``image``, or None when it is unknown."""


@dataclass(frozen=True)
class Problem:
    """One validation finding: ``where`` names a node, ``node.port`` or ``node.param``."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class PipelineError(ValueError):
    """A pipeline is invalid; ``problems`` lists every finding."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


@dataclass(frozen=True)
class Blocked:
    """Why one node cannot run: ``state`` is ``"waiting"`` or ``"error"``; ``message`` says why."""

    state: str
    message: str


@dataclass
class Readiness:
    """What of a pipeline can run (:meth:`Pipeline.readiness`).

    ``problems``: findings about the document as a whole (nothing runs while there are
    any); ``blocked``: node id -> why that node cannot run. Every other node can.
    """

    problems: list[Problem]
    blocked: dict[str, Blocked]


@dataclass(frozen=True)
class _Finding:
    problem: Problem
    nodes: tuple[str, ...] | None  # the nodes it stops; None: the whole document
    waiting_for: str | None = None  # the input port not connected, when that is the finding


@dataclass
class Node:
    """An operator node (``image`` names the operator) or a display node."""

    id: str
    type: str = "operator"
    image: str | None = None
    display: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    position: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def operator_name(self) -> str | None:
        """``oremda/gaussian_blur:1`` -> ``gaussian_blur``."""
        if self.image is None:
            return None
        return operator_name(self.image)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Node:
        """Build from one entry of ``nodes``."""
        known = {"id", "type", "image", "display", "params", "position"}
        return cls(
            id=str(d["id"]),
            type=d.get("type", "operator"),
            image=d.get("image"),
            display=d.get("display"),
            params=copy.deepcopy(d.get("params") or {}),
            position=copy.deepcopy(d.get("position")),
            extra={k: copy.deepcopy(v) for k, v in d.items() if k not in known},
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON entry, unknown fields included."""
        d: dict[str, Any] = {"id": self.id}
        if self.type != "operator":
            d["type"] = self.type
        if self.image is not None:
            d["image"] = self.image
        if self.display is not None:
            d["display"] = self.display
        d["params"] = copy.deepcopy(self.params)
        if self.position is not None:
            d["position"] = dict(self.position)
        d.update(copy.deepcopy(self.extra))
        return d


@dataclass(frozen=True)
class Endpoint:
    """A node id and one of its port names."""

    id: str
    port: str

    def __str__(self) -> str:
        return f"{self.id}.{self.port}"


@dataclass
class Edge:
    """A typed connection from an output port to an input port."""

    source: Endpoint
    target: Endpoint
    type: str = "data"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Edge:
        """Build from one entry of ``edges``."""
        known = {"type", "from", "to"}
        return cls(
            source=Endpoint(str(d["from"]["id"]), str(d["from"]["port"])),
            target=Endpoint(str(d["to"]["id"]), str(d["to"]["port"])),
            type=d.get("type", "data"),
            extra={k: copy.deepcopy(v) for k, v in d.items() if k not in known},
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON entry, unknown fields included."""
        d = {
            "type": self.type,
            "from": {"id": self.source.id, "port": self.source.port},
            "to": {"id": self.target.id, "port": self.target.port},
        }
        d.update(copy.deepcopy(self.extra))
        return d


def operator_name(image: str) -> str:
    """Strip registry path and tag: ``localhost/oremda/blur:1`` -> ``blur``."""
    name = image.rsplit("/", 1)[-1]
    return name.split("@", 1)[0].split(":", 1)[0]


Observer = Callable[["Pipeline"], None]


class Pipeline:
    """A pipeline graph with validated edits.

    Parameters
    ----------
    nodes, edges
        The graph.
    catalog
        Resolves operator images to specs, for validation. Without one, the
        default catalog (the operator registry) is used.
    extra
        Top-level JSON fields this version does not interpret (kept on save).
    """

    def __init__(
        self,
        nodes: Iterable[Node] = (),
        edges: Iterable[Edge] = (),
        catalog: Catalog | None = None,
        extra: dict[str, Any] | None = None,
    ):
        self.nodes: dict[str, Node] = {}
        for node in nodes:
            if node.id in self.nodes:
                raise PipelineError([Problem(node.id, "duplicate node id")])
            self.nodes[node.id] = node
        self.edges: list[Edge] = list(edges)
        self.extra: dict[str, Any] = dict(extra or {})
        self._catalog = catalog
        self._observers: list[Observer] = []
        self.revision = 0

    # -- construction and serialization ------------------------------------------

    @classmethod
    def from_json(cls, doc: dict[str, Any] | str, catalog: Catalog | None = None) -> Pipeline:
        """Build from a JSON document (dict or text); older versions are upgraded."""
        if isinstance(doc, str):
            try:
                doc = json.loads(doc)
            except json.JSONDecodeError as e:
                raise PipelineError([Problem("pipeline", f"not valid JSON: {e}")]) from e
            except RecursionError:
                raise PipelineError([Problem("pipeline", f"JSON nested deeper than {MAX_DEPTH} levels")]) from None
        if not isinstance(doc, dict):
            raise PipelineError([Problem("pipeline", "the document must be a JSON object")])
        if _depth(doc) > MAX_DEPTH:
            raise PipelineError([Problem("pipeline", f"JSON nested deeper than {MAX_DEPTH} levels")])
        try:
            doc = upgrade(doc)
        except ValueError as e:
            raise PipelineError([Problem("pipeline", str(e))]) from e
        problems = _shape_problems(doc)
        if problems:
            raise PipelineError(problems)
        extra = {k: copy.deepcopy(v) for k, v in doc.items() if k not in ("nodes", "edges", "version")}
        return cls(
            (Node.from_json(n) for n in doc["nodes"]),
            (Edge.from_json(e) for e in doc["edges"]),
            catalog=catalog,
            extra=extra,
        )

    @classmethod
    def load(cls, path: str | Path, catalog: Catalog | None = None) -> Pipeline:
        """Read a pipeline JSON file."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise PipelineError([Problem("pipeline", f"cannot read {path}: {e.strerror}")]) from e
        return cls.from_json(text, catalog=catalog)

    def to_json(self) -> dict[str, Any]:
        """The current-version JSON document."""
        doc: dict[str, Any] = {"version": CURRENT_VERSION}
        doc["nodes"] = [n.to_json() for n in self.nodes.values()]
        doc["edges"] = [e.to_json() for e in self.edges]
        doc.update(copy.deepcopy(self.extra))
        return doc

    def save(self, path: str | Path) -> None:
        """Write the JSON document to ``path``."""
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    def copy(self) -> Pipeline:
        """An independent snapshot (observers are not copied)."""
        return Pipeline.from_json(self.to_json(), catalog=self._catalog)

    # -- catalog and observers ---------------------------------------------------

    @property
    def catalog(self) -> Catalog | None:
        """The catalog used for validation (the default one when none was given)."""
        if self._catalog is None and _default_catalog is not None:
            self._catalog = _default_catalog()
        return self._catalog

    def spec(self, node_id: str) -> OperatorSpec | None:
        """The operator spec of a node, or None (display node or unknown image)."""
        node = self.nodes[node_id]
        if node.image is None or self.catalog is None:
            return None
        return self.catalog.lookup(node.image)

    def observe(self, callback: Observer) -> Callable[[], None]:
        """Call ``callback(pipeline)`` after every edit; returns an unsubscribe function."""
        self._observers.append(callback)
        return lambda: self._observers.remove(callback) if callback in self._observers else None

    def _changed(self) -> None:
        self.revision += 1
        for callback in list(self._observers):
            callback(self)

    # -- edits -------------------------------------------------------------------

    def add_node(
        self,
        image: str | None = None,
        *,
        id: str | None = None,
        display: str | None = None,
        params: dict[str, Any] | None = None,
        position: dict[str, float] | None = None,
    ) -> Node:
        """Add an operator node (``image``) or a display node (``display='1D'|'2D'``)."""
        if (image is None) == (display is None):
            raise ValueError("give exactly one of image or display")
        if display is not None and display not in DISPLAY_KINDS:
            raise ValueError(f"display must be one of {DISPLAY_KINDS}, not {display!r}")
        if id is None:
            base = operator_name(image) if image else f"display{display}"
            id = _fresh_id(base, self.nodes)
        if id in self.nodes:
            raise ValueError(f"node id {id!r} is taken")
        bad_id = id_problem(id)
        if bad_id:
            raise PipelineError([Problem(repr(id), bad_id)])
        node = Node(
            id=id,
            type="display" if display else "operator",
            image=image,
            display=display,
            params=dict(params or {}),
            position=position,
        )
        if image is not None:
            spec = self._require_spec(node)
            for name, value in node.params.items():
                self._check_param(spec, node.id, name, value)
        self.nodes[id] = node
        self._changed()
        return node

    def remove_node(self, node_id: str) -> None:
        """Remove a node and every edge that touches it."""
        self._node(node_id)
        del self.nodes[node_id]
        self.edges = [e for e in self.edges if node_id not in (e.source.id, e.target.id)]
        self._changed()

    def connect(self, source: str, source_port: str, target: str, target_port: str) -> Edge:
        """Add an edge; raises :class:`PipelineError` saying why it is refused."""
        edge = Edge(Endpoint(source, source_port), Endpoint(target, target_port))
        out_port = self._port(source, source_port, "output")
        in_port = self._port(target, target_port, "input")
        if out_port.type != in_port.type:
            raise PipelineError(
                [Problem(str(edge.target), f"{out_port.type} output {edge.source} cannot feed a {in_port.type} input")]
            )
        edge.type = out_port.type
        if self.nodes[target].type != "display" and any(e.target == edge.target for e in self.edges):
            raise PipelineError([Problem(str(edge.target), "input already connected")])
        if source == target or target in self.ancestors(source):
            raise PipelineError([Problem(str(edge.target), "this edge would make a cycle")])
        self.edges.append(edge)
        self._changed()
        return edge

    def disconnect(self, source: str, source_port: str, target: str, target_port: str) -> None:
        """Remove the edge between two ports."""
        wanted = (Endpoint(source, source_port), Endpoint(target, target_port))
        kept = [e for e in self.edges if (e.source, e.target) != wanted]
        if len(kept) == len(self.edges):
            raise KeyError(f"no edge {wanted[0]} -> {wanted[1]}")
        self.edges = kept
        self._changed()

    def set_param(self, node_id: str, name: str, value: Any) -> None:
        """Set one parameter, validated against the operator's schema."""
        node = self._node(node_id)
        if node.type == "operator":
            self._check_param(self._require_spec(node), node_id, name, value)
        if node.params.get(name, _MISSING) == value:
            return
        node.params[name] = value
        self._changed()

    def set_params(self, node_id: str, params: dict[str, Any]) -> None:
        """Set several parameters of one node at once (one change event)."""
        node = self._node(node_id)
        if node.type == "operator":
            spec = self._require_spec(node)
            for name, value in params.items():
                self._check_param(spec, node_id, name, value)
        node.params.update(params)
        self._changed()

    def set_position(self, node_id: str, x: float, y: float) -> None:
        """Store the editor position of a node."""
        self._node(node_id).position = {"x": float(x), "y": float(y)}
        self._changed()

    def replace(self, other: Pipeline) -> None:
        """Take the graph of ``other`` (e.g. an imported file), keeping observers."""
        self.nodes, self.edges, self.extra = other.nodes, other.edges, other.extra
        self._changed()

    # -- queries -----------------------------------------------------------------

    def inputs_of(self, node_id: str) -> list[Edge]:
        """Edges that end at ``node_id``."""
        return [e for e in self.edges if e.target.id == node_id]

    def ancestors(self, node_id: str) -> set[str]:
        """Every node upstream of ``node_id``."""
        seen: set[str] = set()
        stack = [node_id]
        while stack:
            for e in self.inputs_of(stack.pop()):
                if e.source.id not in seen:
                    seen.add(e.source.id)
                    stack.append(e.source.id)
        return seen

    def validate(self) -> list[Problem]:
        """Every problem of the graph; empty when it can run."""
        return [finding.problem for finding in self._findings()]

    def check(self) -> None:
        """Raise :class:`PipelineError` if :meth:`validate` finds anything."""
        problems = self.validate()
        if problems:
            raise PipelineError(problems)

    def readiness(self, errors: Mapping[str, str] | None = None) -> Readiness:
        """Which nodes can run, and why each other one cannot (the same findings as :meth:`validate`).

        A node with problems of its own (unknown image, bad parameter, a bad edge into it,
        a cycle through it) is blocked as ``error``; one with a required input not
        connected (a display's ``in`` included) is ``waiting`` for that input; an operator
        node downstream of a blocked node is ``waiting`` for it, and so is a display node
        all of whose producers are blocked (a display with one runnable producer shows that one). Only problems of
        the document itself (its ``provenance`` block) are :attr:`Readiness.problems`.
        ``errors`` (node id -> message) adds what only a runtime knows, e.g. an image it
        cannot find; such a message replaces the node's own findings.

        Examples
        --------
        >>> p = Pipeline.from_json({"nodes": [{"id": "blur", "image": "oremda/gaussian_blur"}], "edges": []})
        >>> p.readiness().blocked["blur"]
        Blocked(state='waiting', message='waiting for input: image')
        """
        fatal: list[Problem] = []
        own: dict[str, list[str]] = {}
        unfed: dict[str, list[str]] = {}
        for finding in self._findings():
            if finding.nodes is None:
                fatal.append(finding.problem)
            for node_id in finding.nodes or ():
                if node_id not in self.nodes:
                    continue  # an edge into a node that does not exist stops nothing
                if finding.waiting_for:
                    unfed.setdefault(node_id, []).append(finding.waiting_for)
                else:
                    own.setdefault(node_id, []).append(_own_message(node_id, finding.problem))
        own.update({n: [message] for n, message in (errors or {}).items() if n in self.nodes})
        blocked = {n: Blocked("error", "; ".join(messages)) for n, messages in own.items()}
        for node_id, ports in unfed.items():
            blocked.setdefault(node_id, Blocked("waiting", "waiting for input: " + ", ".join(ports)))
        sources: dict[str, set[str]] = {n: set() for n in self.nodes}
        children: dict[str, set[str]] = {n: set() for n in self.nodes}
        for e in self.edges:
            if e.source.id in self.nodes and e.target.id in self.nodes:
                sources[e.target.id].add(e.source.id)
                children[e.source.id].add(e.target.id)
        later: set[str] = set()
        stack = list(blocked)
        while stack:
            for child in children[stack.pop()]:
                if child in blocked or child in later:
                    continue
                if self.nodes[child].type == "display" and not sources[child] <= blocked.keys() | later:
                    continue
                later.add(child)
                stack.append(child)
        for node_id in later:
            waits = sorted(sources[node_id] & (blocked.keys() | later))
            blocked[node_id] = Blocked("waiting", "waiting for upstream: " + ", ".join(waits))
        return Readiness(fatal, {n: blocked[n] for n in self.nodes if n in blocked})  # in node order

    # -- internals ---------------------------------------------------------------

    def _node(self, node_id: str) -> Node:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise PipelineError([Problem(node_id, "no such node")]) from None

    def _require_spec(self, node: Node) -> OperatorSpec:
        spec = self.catalog.lookup(node.image) if self.catalog and node.image else None
        if spec is None:
            raise PipelineError([Problem(node.id, f"unknown operator image {node.image!r}")])
        return spec

    @staticmethod
    def _check_param(spec: OperatorSpec, node_id: str, name: str, value: Any) -> None:
        param = spec.params.get(name)
        if param is None:
            raise PipelineError([Problem(f"{node_id}.{name}", f"{spec.name} has no parameter {name!r}")])
        errors = param.check(value)
        if errors:
            raise PipelineError([Problem(f"{node_id}.{name}", "; ".join(errors))])

    def _port(self, node_id: str, port: str, side: str) -> PortSpec:
        node = self._node(node_id)
        if node.type == "display":
            if side == "input" and port == DISPLAY_PORT:
                return PortSpec(DISPLAY_PORT, "display")
            raise PipelineError([Problem(f"{node_id}.{port}", f"display nodes have no {side} port {port!r}")])
        spec = self._require_spec(node)
        table = spec.inputs if side == "input" else spec.outputs
        if port not in table:
            raise PipelineError(
                [Problem(f"{node_id}.{port}", f"{spec.name} has no {side} port {port!r} (has {sorted(table)})")]
            )
        return table[port]

    def _findings(self) -> list[_Finding]:
        """Every problem, each with the nodes it stops (None: the whole document)."""
        findings = [_Finding(p, None) for p in _provenance_problems(self.extra.get("provenance"))]
        ports: dict[str, tuple[dict[str, PortSpec], dict[str, PortSpec]]] = {}
        for node in self.nodes.values():
            bad_id = id_problem(node.id)
            if bad_id:
                findings.append(_Finding(Problem(repr(node.id), bad_id), (node.id,)))
                continue
            findings += [_Finding(p, (node.id,)) for p in self._node_problems(node, ports)]
        fed: dict[Endpoint, int] = {}
        for edge in self.edges:
            # A bad edge stops what it feeds; its source can still run.
            findings += [_Finding(p, (edge.target.id,)) for p in _edge_problems(edge, self.nodes, ports)]
            fed[edge.target] = fed.get(edge.target, 0) + 1
        for node_id, (inputs, _) in ports.items():
            layers = self.nodes[node_id].type == "display"  # its one input takes any number of edges
            for port in inputs.values():
                count = fed.get(Endpoint(node_id, port.name), 0)
                where = f"{node_id}.{port.name}"
                if count == 0 and port.required:
                    findings.append(_Finding(Problem(where, "required input is not connected"), (node_id,), port.name))
                if count > 1 and not layers:
                    findings.append(_Finding(Problem(where, f"input has {count} edges; only one allowed"), (node_id,)))
        for cycle in _find_cycles(self.nodes, self.edges):
            findings.append(_Finding(Problem(cycle[0], "cycle: " + " -> ".join(cycle)), tuple(cycle[:-1])))
        return findings

    def _node_problems(self, node: Node, ports: dict) -> list[Problem]:
        if node.type == "display":
            ports[node.id] = ({DISPLAY_PORT: PortSpec(DISPLAY_PORT, "display")}, {})
            if node.display not in DISPLAY_KINDS:
                return [Problem(node.id, f"display must be one of {DISPLAY_KINDS}, not {node.display!r}")]
            return []
        if node.type != "operator":
            return [Problem(node.id, f"unknown node type {node.type!r}")]
        if not node.image:
            return [Problem(node.id, "operator node has no image")]
        spec = self.catalog.lookup(node.image) if self.catalog else None
        if spec is None:
            return [Problem(node.id, f"unknown operator image {node.image!r}")]
        ports[node.id] = (spec.inputs, spec.outputs)
        problems = []
        for name, value in node.params.items():
            param = spec.params.get(name)
            if param is None:
                problems.append(Problem(f"{node.id}.{name}", f"{spec.name} has no parameter {name!r}"))
            else:
                problems += [Problem(f"{node.id}.{name}", m) for m in param.check(value)]
        for name, param in spec.params.items():
            if param.required and param.default is None and name not in node.params:
                problems.append(Problem(f"{node.id}.{name}", "required parameter is not set"))
        return problems


_MISSING = object()
_default_catalog: Callable[[], Catalog] | None = None


def set_default_catalog(factory: Callable[[], Catalog]) -> None:
    """Name the catalog that pipelines without one use (the package sets the registry)."""
    global _default_catalog
    _default_catalog = factory


def id_problem(node_id: Any) -> str | None:
    """Why ``node_id`` cannot be a node id, or None.

    Ids are data, never paths: the CLI names files after display nodes, so an id may
    hold no path separator, NUL or control character, and is not ``.`` or ``..``.

    Examples
    --------
    >>> id_problem("blur1") is None
    True
    >>> id_problem("../../x")
    'a node id cannot contain a path separator'
    """
    if not isinstance(node_id, str) or not node_id:
        return "a node id must be a non-empty string"
    if len(node_id) > MAX_ID_LENGTH:
        return f"a node id is at most {MAX_ID_LENGTH} characters"
    if "/" in node_id or "\\" in node_id:
        return "a node id cannot contain a path separator"
    if any(ord(c) < 32 or ord(c) == 127 for c in node_id):
        return "a node id cannot contain NUL or control characters"
    if node_id in (".", ".."):
        return f"{node_id!r} is not a node id"
    return None


def _provenance_problems(provenance: Any) -> list[Problem]:
    """The export block's shape, as far as the engine reads it (digests per operator and node)."""
    if provenance is None:
        return []
    if not isinstance(provenance, dict):
        return [Problem("provenance", "must be an object")]
    problems = []
    for key in ("operators", "nodes"):
        table = provenance.get(key, {})
        if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
            problems.append(Problem(f"provenance.{key}", "must map names to objects"))
        elif not all(isinstance(v.get("digest", ""), (str, type(None))) for v in table.values()):
            problems.append(Problem(f"provenance.{key}", "a digest must be a string"))
    return problems


def _own_message(node_id: str, problem: Problem) -> str:
    """A problem as shown on its node: ``sigma: must be >= 0`` rather than ``blur.sigma: ...``."""
    if problem.where in (node_id, repr(node_id)):
        return problem.message
    if problem.where.startswith(f"{node_id}.") and " " not in problem.where:
        return f"{problem.where[len(node_id) + 1 :]}: {problem.message}"
    return str(problem)


def _depth(doc: Any) -> int:
    """How deeply lists and objects nest in ``doc`` (walked without recursion)."""
    deepest = 0
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, (list, tuple)):
            children = value
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _fresh_id(base: str, taken: dict[str, Any]) -> str:
    i = 1
    while f"{base}{i}" in taken:
        i += 1
    return f"{base}{i}"


def _edge_problems(edge: Edge, nodes: dict[str, Node], ports: dict) -> list[Problem]:
    problems = []
    ends = {}
    for end, side in ((edge.source, 1), (edge.target, 0)):
        if end.id not in nodes:
            problems.append(Problem(str(end), f"edge refers to unknown node {end.id!r}"))
            continue
        if end.id not in ports:
            continue  # the node itself is already reported
        table = ports[end.id][side]
        kind = "output" if side else "input"
        if end.port not in table:
            problems.append(Problem(str(end), f"no {kind} port {end.port!r} (has {sorted(table)})"))
            continue
        ends[side] = table[end.port]
    for port in ends.values():
        if port.type != edge.type:
            problems.append(
                Problem(
                    f"{edge.source} -> {edge.target}", f"edge type {edge.type!r} does not match port type {port.type!r}"
                )
            )
    return problems


def _find_cycles(nodes: dict[str, Node], edges: list[Edge]) -> list[list[str]]:
    """Disjoint cycles, each as a node path (first node repeated at the end); without them the rest is acyclic.

    One depth-first pass with an explicit stack (a chain of thousands of nodes is fine, and
    so are thousands of cycles): a cycle found is set aside at once and the search goes on
    from the node before it, so a node on another cycle through them is downstream of them.
    """
    children: dict[str, list[str]] = {n: [] for n in nodes}
    for e in edges:
        if e.source.id in children and e.target.id in children:
            children[e.source.id].append(e.target.id)
    finished: set[str] = set()  # done, or on a cycle already found
    cycles: list[list[str]] = []
    for root in nodes:
        if root in finished:
            continue
        path, at = [root], {root: 0}  # the current path and each node's place on it
        stack = [iter(children[root])]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                done = path.pop()
                del at[done]
                finished.add(done)
                stack.pop()
            elif child in at:
                cycle = path[at[child] :]
                cycles.append([*cycle, child])
                finished.update(cycle)
                del path[at[child] :], stack[at[child] :]
                for node_id in cycle:
                    del at[node_id]
            elif child not in finished:
                at[child] = len(path)
                path.append(child)
                stack.append(iter(children[child]))
    return cycles


def _shape_problems(doc: dict[str, Any]) -> list[Problem]:
    problems = []
    for key in ("nodes", "edges"):
        if not isinstance(doc.get(key), list):
            problems.append(Problem("pipeline", f"{key!r} must be a list"))
    if problems:
        return problems
    seen = set()
    for i, n in enumerate(doc["nodes"]):
        if not isinstance(n, dict) or "id" not in n:
            problems.append(Problem(f"nodes[{i}]", "a node must be an object with an 'id'"))
            continue
        if isinstance(n["id"], bool) or not isinstance(n["id"], (str, int)):
            problems.append(Problem(f"nodes[{i}]", "a node id must be a string"))
            continue
        if str(n["id"]) in seen:
            problems.append(Problem(str(n["id"]), "duplicate node id"))
        seen.add(str(n["id"]))
        if not isinstance(n.get("params", {}), dict):
            problems.append(Problem(str(n["id"]), "'params' must be an object"))
        for key in ("type", "image", "display"):
            if n.get(key) is not None and not isinstance(n[key], str):
                problems.append(Problem(str(n["id"]), f"{key!r} must be a string"))
        position = n.get("position")
        if position is not None and not (
            isinstance(position, dict)
            and all(isinstance(position.get(k), (int, float)) and not isinstance(position.get(k), bool) for k in "xy")
        ):
            problems.append(Problem(str(n["id"]), "'position' must be an object with numbers x and y"))
    for i, e in enumerate(doc["edges"]):
        ok = isinstance(e, dict) and all(
            isinstance(e.get(k), dict) and isinstance(e[k].get("id"), (str, int)) and isinstance(e[k].get("port"), str)
            for k in ("from", "to")
        )
        ok = ok and isinstance(e.get("type", "data"), str)
        if not ok:
            problems.append(Problem(f"edges[{i}]", "an edge needs 'from' and 'to' objects with 'id' and 'port'"))
    return problems
