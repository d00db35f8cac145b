"""``oremda-lab``: validate, run and list operators from the command line.

The same :class:`Pipeline` and :class:`Engine` the notebook widget uses. Every
error reaches the user as one message and a non-zero exit status, not a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from oremda_lab.displays import to_png
from oremda_lab.engine import Engine, NodeEvent
from oremda_lab.registry import Registry, default_registry
from oremda_lab.runtime import NAMED_RUNTIMES, RuntimeUnavailable
from oremda_lab.spec.operator import OperatorSpec
from oremda_lab.spec.pipeline import Pipeline, PipelineError, id_problem

DEBUG_ENV = "OREMDA_DEBUG"
ENGINES = ("docker", "podman")  # engines that push and pull
CATALOGS = (*ENGINES, "apptainer")  # engines whose operator images can be listed


class UserError(Exception):
    """A problem the user can fix; printed as one line."""


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.command(args)
    except BrokenPipeError:  # the reader left (`oremda-lab operators | head`): nothing went wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush is quiet
        return 0
    except (UserError, PipelineError, RuntimeUnavailable, OSError, ValueError, KeyError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"oremda-lab: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("oremda-lab: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: still one line, the traceback on request
        if os.environ.get(DEBUG_ENV):
            raise
        message = f"{type(e).__name__}: {e}".splitlines()[0]
        print(f"oremda-lab: internal error: {message} (set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oremda-lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a pipeline and write its displays as PNGs")
    run.add_argument("pipeline", type=Path)
    run.add_argument("--data", type=Path, default=Path.cwd(), help="folder that file parameters are relative to")
    run.add_argument("--out", type=Path, default=Path("out"), help="folder for display PNGs (one per display node)")
    run.add_argument("--runtime", choices=sorted(NAMED_RUNTIMES), default=None, help="where operators run")
    run.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE", help="override a parameter")
    run.add_argument("--record", type=Path, help="write the run record (JSON) here")
    run.add_argument("--timeout", type=float, help="seconds one node may take (default 600)")
    run.add_argument("--ranks", type=int, help="MPI ranks (with --runtime mpi)")
    run.add_argument(
        "--images", choices=("podman", "apptainer"), help="MPI ranks run operators in their images (with --runtime mpi)"
    )
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.set_defaults(command=_run)

    validate = sub.add_parser("validate", help="check a pipeline without running it")
    validate.add_argument("pipeline", type=Path)
    validate.add_argument(
        "--runtime", "--engine", dest="engine", choices=CATALOGS, help="also know the operator images of this engine"
    )
    validate.set_defaults(command=_validate)

    examples = sub.add_parser("examples", help="fetch the real example data (once) and print its folder")
    examples.set_defaults(command=_examples)

    operators = sub.add_parser("operators", help="list operators with their ports and parameters")
    operators.add_argument("--json", action="store_true", help="print the descriptions as JSON")
    operators.add_argument(
        "--runtime",
        "--engine",
        dest="engine",
        choices=CATALOGS,
        help="also list the operator images of this container engine (read from their labels)",
    )
    operators.set_defaults(command=_operators)

    labels = sub.add_parser("labels", help="check an operator image's oremda.* labels; print its ports and params")
    labels.add_argument("target", metavar="IMAGE", help="an image reference, or an operator folder or operator.json")
    labels.add_argument("--engine", choices=ENGINES, default="docker", help="the engine holding the image")
    labels.add_argument("--dockerfile", action="store_true", help="print them as a Dockerfile LABEL instruction")
    labels.set_defaults(command=_labels)

    push = sub.add_parser("push", help="push built operator images to a registry; prints REF@sha256:DIGEST each")
    push.add_argument("names", nargs="+", metavar="NAME", help="operators (built from folders, or images)")
    push.add_argument("--to", required=True, metavar="REGISTRY/ORG", help="where to push, e.g. ghcr.io/my-lab")
    push.add_argument("--engine", choices=ENGINES, default="docker", help="the engine holding the images")
    push.set_defaults(command=_push)

    pull = sub.add_parser("pull", help="pull operator images (REGISTRY/ORG/NAME:TAG or ...@sha256:...)")
    pull.add_argument("refs", nargs="+", metavar="REF")
    pull.add_argument("--engine", choices=ENGINES, default="docker", help="the engine to pull into")
    pull.set_defaults(command=_pull)

    envs = sub.add_parser("envs", help="list the cached per-operator environments (size, last use), or prune them")
    envs.add_argument("action", nargs="?", choices=("list", "prune"), default="list")
    envs.add_argument(
        "--older-than", type=float, default=30, metavar="DAYS", help="prune: unused this long (default 30)"
    )
    envs.add_argument("--unused", action="store_true", help="prune: also those no listed operator runs in")
    envs.add_argument("--dry-run", action="store_true", help="prune: only say what would go")
    envs.set_defaults(command=_envs)

    from oremda_lab.images.build import add_arguments as add_build_arguments
    from oremda_lab.images.build import run as build_images

    build = sub.add_parser("build", help="build operator images (Docker, Podman, or Apptainer SIF files)")
    add_build_arguments(build)
    build.set_defaults(command=build_images)
    return parser


def _validate(args: argparse.Namespace) -> int:
    pipeline = Pipeline.load(args.pipeline, catalog=_registry(args.engine))
    problems = pipeline.validate()
    for problem in problems:
        print(f"{args.pipeline}: {problem}")
    if not problems:
        print(f"{args.pipeline}: valid ({len(pipeline.nodes)} nodes, {len(pipeline.edges)} edges)")
    return 1 if problems else 0


def _run(args: argparse.Namespace) -> int:
    """Run what can run; exit 0 only when every node ran (see docs/pipelines.md, "Partial graphs").

    A node that cannot run (an input not connected, its own invalid parameter, an image
    that cannot be found) does not stop the rest: each is reported on its own line, the
    displays that got values are written, and the exit status is 1, as for a node that
    failed. Only a document that cannot run at all is one error line and status 2.
    """
    sets = [_parse_set(assignment) for assignment in args.set]
    if not args.data.is_dir():
        raise UserError(f"data folder {args.data} does not exist")
    options: dict[str, Any] = {"timeout": args.timeout}
    if args.ranks:
        options["ranks"] = args.ranks
    if args.images:
        options["images"] = args.images
    with Engine(runtime=args.runtime, data_dir=args.data, **options) as engine:
        if not args.quiet:
            engine.subscribe(_progress(time.perf_counter()))
        # The engine's registry: a container runtime's images are operators too.
        pipeline = Pipeline.load(args.pipeline, catalog=engine.registry)
        if sets:
            engine.pull(pipeline)  # a pulled operator's parameters are known only after the pull
        for node, param, value in sets:
            pipeline.set_param(node, param, value)
        writer = _PngWriter(pipeline, args.out)
        engine.subscribe(writer)
        run = engine.run(pipeline)
        if writer.failure is not None:
            raise writer.failure
        if args.record:  # while the engine is open: the record identifies the outputs' bytes
            args.record.write_text(json.dumps(run.record(), indent=2, default=str) + "\n")
    for node_id, error in run.errors.items():
        print(f"oremda-lab: node {_shown(node_id)} failed: {error['message']}", file=sys.stderr)
        if error.get("log_tail"):
            print("  log tail:\n    " + error["log_tail"].replace("\n", "\n    "), file=sys.stderr)
    for node_id, message in run.waiting.items():
        print(f"oremda-lab: node {_shown(node_id)} did not run: {message}", file=sys.stderr)
    outcome = "ok" if run.ok else "failed" if run.errors or run.superseded else "incomplete"
    print(f"{outcome} in {run.duration_s:.2f} s")
    return 0 if run.ok else 1


class _PngWriter:
    """Writes a display's PNG as soon as its final ``done`` event arrives (its producers are done).

    Partial previews (``event.partial``, while a node upstream runs as partitions) write nothing.

    The out folder is made with the first PNG: a run refused before running (a changed
    pin) or without displays leaves nothing behind. A display that did not run (waiting,
    or skipped behind a failure) writes nothing. The
    first failure to write stops further writes and is kept in ``failure``, for the caller
    to raise once the run ends (an event subscriber's exception cannot stop the engine).
    """

    def __init__(self, pipeline: Pipeline, out: Path):
        self.pipeline = pipeline
        self.out = out
        self.failure: Exception | None = None

    def __call__(self, event: NodeEvent) -> None:
        if event.state != "done" or event.layers is None or event.partial or self.failure is not None:
            return
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            path = to_png(self.pipeline.nodes[event.node], list(event.layers), _display_path(self.out, event.node))
        except Exception as e:
            self.failure = e
            return
        print(f"wrote {path}", flush=True)


def _shown(node_id: str) -> str:
    """A node id as printed: quoted when it is no valid id, so control characters never reach the terminal."""
    return node_id if id_problem(node_id) is None else repr(node_id)


def _progress(started: float):
    tenths: dict[str, int] = {}  # per node: the last tenth of progress printed

    def show(event: NodeEvent) -> None:
        at = f"[{time.perf_counter() - started:7.2f} s]"
        node = _shown(event.node) if event.node is not None else ""
        if event.node is None:
            if event.message:
                print(f"{at} {event.message}", flush=True)
        elif event.partial:  # a display's preview while partitions upstream run
            print(f"{at} {node}: partial {event.message}", flush=True)
        elif event.state in ("done", "cached") and event.duration_s is None:  # a display node shown
            print(f"{at} {node}: {event.state}", flush=True)
        elif event.state in ("done", "cached"):
            print(f"{at} {node}: {event.state} ({event.duration_s:.3f} s)", flush=True)
        elif event.state in ("error", "skipped"):
            print(f"{at} {node}: {event.state}: {event.error['message']}", flush=True)
        elif event.state == "running" and event.progress is not None:  # a long task's progress (C1), by tenths
            tenth = int(event.progress * 10)
            if tenths.get(event.node) != tenth:
                tenths[event.node] = tenth
                print(f"{at} {node}: running {event.progress:.0%} {event.message}".rstrip(), flush=True)
        elif event.state == "running":
            print(f"{at} {node}: running", flush=True)
        elif event.state in ("preparing", "waiting"):
            print(f"{at} {node}: {event.state}: {event.message}", flush=True)

    return show


def _operators(args: argparse.Namespace) -> int:
    specs = _registry(args.engine).all()
    if args.json:
        print(json.dumps([{**s.to_dict(), "image": s.image} if s.image else s.to_dict() for s in specs], indent=2))
        return 0
    for spec in specs:
        print(_describe(spec))
    return 0


def _describe(spec: OperatorSpec) -> str:
    """An operator's ports and parameters, as ``operators`` and ``labels`` print them."""
    where = f" [image {spec.image}]" if spec.image else ""
    lines = [f"{spec.name} {spec.version}: {spec.description}{where}"]
    for side, ports in (("in", spec.inputs), ("out", spec.outputs)):
        for port in ports.values():
            optional = "" if port.required else ", optional"
            lines.append(f"  {side:>3} {port.name} ({port.type}{optional})")
    for param in spec.params.values():
        bounds = ""
        if param.min is not None or param.max is not None:
            bounds = f" [{param.min if param.min is not None else ''}..{param.max if param.max is not None else ''}]"
        unit = f" {param.unit}" if param.unit else ""
        lines.append(f"  param {param.name}: {param.type}{bounds}{unit} = {param.default!r}")
    return "\n".join(lines)


def _labels(args: argparse.Namespace) -> int:
    from oremda_lab.images.labels import check_labels, dockerfile_labels, read_labels
    from oremda_lab.spec.labels import labels_to_spec, spec_to_labels

    path = Path(args.target)
    if path.exists():  # an operator folder (or its operator.json): the labels it would get
        folder = path.parent if path.is_file() else path
        spec = OperatorSpec.from_dict(json.loads((folder / "operator.json").read_text()), str(folder))
        where, image, labels = str(path), None, spec_to_labels(spec)
    else:
        catalog = _catalog(args.engine)
        image, labels = read_labels(catalog.client, args.target, catalog.prefix)
        where = image
    problems = check_labels(labels)
    for problem in problems:
        print(f"{where}: {problem}", file=sys.stderr)
    if problems:
        return 1
    spec = labels_to_spec(labels)
    print(dockerfile_labels(spec) if args.dockerfile else _describe(dataclasses.replace(spec, image=image)))
    return 0


def _registry(engine: str | None) -> Registry:
    """The operator folders, and the operator images of ``engine`` when one is named."""
    return default_registry().with_catalogs(_catalog(engine)) if engine else default_registry()


def _catalog(engine: str):
    if engine == "apptainer":
        from oremda_lab.runtime.apptainer import SifCatalog

        return SifCatalog()
    from oremda_lab.runtime.docker import ImageCatalog, PodmanRuntime, connect

    prefix = PodmanRuntime.default_prefix if engine == "podman" else ""
    return ImageCatalog(connect(engine=engine), prefix, engine)


def _envs(args: argparse.Namespace) -> int:
    """List the cached venvs with the operators (of the default registry) that run in each, or prune."""
    from oremda_lab.dataplane.arena import human_size
    from oremda_lab.runtime import environments

    users: dict[str, list[str]] = {}
    for spec in Registry().all():  # as OREMDA_OPERATORS_PATH is now
        if spec.path is not None:
            users.setdefault(environments.environment_key(spec) or "", []).append(spec.name)
    if args.action == "list":
        listed = environments.cached_environments()
        for env in listed:
            used = time.strftime("%Y-%m-%d %H:%M", time.localtime(env.last_used))
            state = "" if env.complete else " (incomplete)"
            names = ", ".join(users.get(env.key, [])) or "-"
            print(f"{env.key}  {human_size(env.size):>9} (own {human_size(env.own):>9})  used {used}  "
                  f"python {env.python or '?'}  {env.packages} packages  {names}{state}")  # fmt: skip
        total, own = human_size(sum(e.size for e in listed)), human_size(sum(e.own for e in listed))
        print(f"{len(listed)} environments in {environments.cache_root()}: {total}, {own} of it their own")
        return 0
    if not args.older_than >= 0:  # nan too; inf: never by age
        raise UserError("--older-than must be a number of days >= 0")
    needed = set(users) if args.unused else None
    removed = environments.prune_environments(args.older_than * 86400, needed, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for env in removed:
        used = time.strftime("%Y-%m-%d", time.localtime(env.last_used))
        print(f"{verb} {env.key} ({human_size(env.own)} its own, used {used})")
    print(f"{verb} {len(removed)} environments, {human_size(sum(e.own for e in removed))} their own")
    return 0


def _push(args: argparse.Namespace) -> int:
    catalog = _catalog(args.engine)
    registry = default_registry().with_catalogs(catalog)
    target = args.to.rstrip("/")
    for name in args.names:
        spec = registry.get(name)  # a folder's built image, else an operator that is only an image
        local = spec.image or catalog.resolve(f"oremda/{spec.name}:{spec.version}")
        try:
            print(catalog.push(local, f"{target}/{spec.name}:{spec.version}"), flush=True)
        except (LookupError, RuntimeError) as e:
            raise UserError(str(e)) from None
    return 0


def _pull(args: argparse.Namespace) -> int:
    catalog = _catalog(args.engine)
    for ref in args.refs:
        try:
            catalog.pull(ref, progress=lambda message: print(message, flush=True))
        except LookupError as e:
            raise UserError(str(e)) from None
        spec = catalog.lookup(ref)
        if spec is None:
            raise UserError(f"{ref} has no oremda.* labels: it is not an operator image")
        print(f"{ref}: operator {spec.name} {spec.version} ({spec.image})", flush=True)
    return 0


def _examples(args: argparse.Namespace) -> int:
    from oremda_lab.examples import DataUnavailable, example_data

    try:
        print(example_data())
    except DataUnavailable as e:
        raise UserError(str(e)) from None
    return 0


def _display_path(out: Path, node_id: str) -> Path:
    """``<out>/<id>.png``, refused unless it is a file directly inside ``out``."""
    folder = out.resolve()
    path = (folder / f"{node_id}.png").resolve()
    if path.parent != folder:
        raise UserError(f"display node id {node_id!r} would write outside {out}")
    return path


def _parse_set(assignment: str) -> tuple[str, str, Any]:
    target, sep, raw = assignment.partition("=")
    node, dot, param = target.partition(".")
    if not sep or not dot or not node or not param:
        raise UserError(f"--set expects NODE.PARAM=VALUE, got {assignment!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    except RecursionError:
        raise UserError(f"--set {target}: the value is nested too deeply") from None
    return node, param, value


if __name__ == "__main__":
    sys.exit(main())
