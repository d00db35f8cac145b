"""``python -m oremda_lab.worker``: the loop that hosts one operator.

The worker connects to its runtime, says HELLO (with a report of its Python
environment, for provenance), then answers each RUN with one RESULT or ERROR until
SHUTDOWN or until the runtime goes away. An exception (even
``SystemExit``) raised by the operator becomes an ERROR; the loop lives on.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Client, Connection
from pathlib import Path
from typing import Any

from oremda_lab.dataplane.arena import Arena
from oremda_lab.spec.operator import OperatorSpec
from oremda_lab.worker import protocol
from oremda_lab.worker.invoke import invoke

_loading = threading.Lock()


def load_operator(folder: str | Path) -> tuple[OperatorSpec, Any]:
    """Read ``operator.json`` in ``folder`` and import its entry-point function."""
    folder = Path(folder).resolve()
    spec = OperatorSpec.from_dict(json.loads((folder / "operator.json").read_text()), str(folder))
    module_name, _, func_name = spec.entrypoint.partition(":")
    # A unique module name per operator: many operators load into one test process.
    unique = f"oremda_operator_{spec.name}_{module_name}"
    with _loading:  # the inline runtime loads operators from several threads
        module = sys.modules.get(unique)
        if module is None:
            found = importlib.util.spec_from_file_location(unique, folder / f"{module_name}.py")
            if found is None or found.loader is None:
                raise ImportError(f"operator {spec.name}: no module {module_name}.py in {folder}")
            module = importlib.util.module_from_spec(found)
            found.loader.exec_module(module)
            sys.modules[unique] = module
    if func_name:
        return spec, getattr(module, func_name)
    marked = [v for v in vars(module).values() if callable(v) and hasattr(v, "oremda_operator")]
    if len(marked) != 1:
        raise ImportError(f"{module_name} must define exactly one @operator function, found {len(marked)}")
    return spec, marked[0]


class Worker:
    """Runs tasks for one operator against one shared-memory session."""

    def __init__(self, spec: OperatorSpec, func: Any, arena: Arena, data_dir: str | None = None):
        self.spec = spec
        self.data_dir = data_dir
        self.func = func
        self.arena = arena
        self.state: dict[str, Any] = {}  # a stateful operator's, kept between runs

    def handle(self, msg: dict[str, Any], send_progress: Callable[[float, str], None] | None = None) -> bytes:
        """Answer one RUN message (see :func:`~oremda_lab.worker.invoke.invoke`)."""
        return invoke(
            self.spec, self.func, self.arena, msg, state=self.state, data_dir=self.data_dir, send_progress=send_progress
        )


@functools.cache
def environment_report() -> dict[str, Any]:
    """The running interpreter's version and path, and every installed distribution's version.

    Names are normalized (PEP 503: ``scikit-image``). Cached: a fork server computes it
    once and its workers inherit it.
    """
    packages: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        # A wheel's NAME-VERSION.dist-info folder says both; parsing every METADATA file
        # instead takes a third of a second in a big environment.
        folder = getattr(dist, "_path", None)
        stem = folder.name.removesuffix(".dist-info") if folder is not None and folder.suffix == ".dist-info" else ""
        name, version = stem.split("-") if stem.count("-") == 1 else (dist.metadata["Name"] or "", dist.version)
        if name:
            packages.setdefault(re.sub(r"[-_.]+", "-", name).lower(), version)  # the first on sys.path is imported
    packages = dict(sorted(packages.items()))
    return {"python": platform.python_version(), "executable": sys.executable, "packages": packages}


def serve(conn: Connection, worker: Worker, worker_id: str) -> None:
    """Say HELLO, then answer messages until SHUTDOWN or end of stream."""
    hello = protocol.encode(
        protocol.HELLO, worker=worker_id, operator=worker.spec.name, pid=os.getpid(), environment=environment_report()
    )
    conn.send_bytes(hello)
    while True:
        try:
            msg = protocol.decode(conn.recv_bytes())
        except (EOFError, OSError):
            return
        op = msg["op"]
        if op == protocol.RUN:
            conn.send_bytes(worker.handle(msg, functools.partial(send_progress, conn, msg["task"])))
        elif op == protocol.PING:
            conn.send_bytes(protocol.encode(protocol.PONG))
        elif op == protocol.SHUTDOWN:
            return


def send_progress(conn: Connection, task: str, fraction: float, message: str) -> None:
    """A PROGRESS message mid-task (C2), on the connection the RESULT will take."""
    conn.send_bytes(protocol.encode(protocol.PROGRESS, task=task, fraction=fraction, message=message))


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m oremda_lab.worker")
    parser.add_argument("--operator", required=True, help="operator folder (with operator.json)")
    parser.add_argument("--connect", required=True, help="runtime control socket")
    parser.add_argument("--session", required=True, help="shared-memory session folder")
    parser.add_argument("--worker", required=True, help="worker id to announce")
    args = parser.parse_args(argv)
    spec, func = load_operator(args.operator)
    authkey = bytes.fromhex(os.environ.get(protocol.AUTHKEY_ENV, ""))
    conn = Client(args.connect, family="AF_UNIX", authkey=authkey or None)
    serve(conn, Worker(spec, func, Arena.attach(args.session)), args.worker)
