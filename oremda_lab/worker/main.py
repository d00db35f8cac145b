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
import time
import traceback
from multiprocessing.connection import Client, Connection
from pathlib import Path
from typing import Any

from oremda_lab.dataplane.arena import Arena
from oremda_lab.dataplane.refs import ObjectRef
from oremda_lab.spec.operator import OperatorSpec
from oremda_lab.worker import protocol
from oremda_lab.worker.sdk import PortValue, as_port_value, current_allocator, current_data_dir

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
        self.state: dict[str, Any] = {}
        self.stateful = getattr(func, "oremda_operator", {}).get("stateful", False)

    def handle(self, msg: dict[str, Any]) -> bytes:
        """Answer one RUN message."""
        task = msg["task"]
        start = time.perf_counter()
        allocated: list[tuple[Any, ObjectRef]] = []

        def allocate(shape: tuple[int, ...], dtype: Any) -> Any:
            made = self.arena.allocate_array(f"{task}--alloc{len(allocated)}", shape, dtype)
            if made is None:
                return None
            allocated.append(made)
            return made[0]

        tokens = current_data_dir.set(self.data_dir), current_allocator.set(allocate)
        try:
            inputs = {
                port: PortValue(
                    self.arena.get(ObjectRef.from_dict(v["ref"])) if v.get("ref") else None, v.get("meta", {})
                )
                for port, v in msg["inputs"].items()
            }
            # An input returned as it is goes on by reference: no copy (ids are stable
            # while the inputs live, and the call's results exist before they go).
            forward = {
                id(v.data): ObjectRef.from_dict(msg["inputs"][p]["ref"])
                for p, v in inputs.items()
                if v.data is not None
            }
            args = (inputs, msg["params"], self.state) if self.stateful else (inputs, msg["params"])
            returned = self.func(*args)
            del inputs, args  # drop input views before the engine may reuse their buffers
            outputs = self._store(task, returned, allocated, forward)
            try:
                return protocol.encode(
                    protocol.RESULT, task=task, outputs=outputs, duration_s=time.perf_counter() - start
                )
            except (TypeError, ValueError) as e:
                raise TypeError(f"output meta is not JSON-serialisable: {e}") from e
        except SystemExit as e:
            self._discard(task)
            return protocol.encode(protocol.ERROR, task=task, error=f"operator called sys.exit({e.code})", traceback="")
        except Exception as e:
            self._discard(task)
            return protocol.encode(
                protocol.ERROR, task=task, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc()
            )
        finally:
            current_data_dir.reset(tokens[0])
            current_allocator.reset(tokens[1])

    def _store(
        self, task: str, returned: Any, allocated: list[tuple[Any, ObjectRef]], forward: dict[int, ObjectRef]
    ) -> dict[str, Any]:
        if not isinstance(returned, dict):
            raise TypeError(f"operator returned {type(returned).__name__}, not a dict of outputs")
        unknown = set(returned) - set(self.spec.outputs)
        if unknown:
            raise KeyError(f"operator returned unknown outputs {sorted(unknown)}")
        missing = [p for p, port in self.spec.outputs.items() if port.required and p not in returned]
        if missing:
            raise KeyError(f"operator did not return outputs {missing}")
        wire = {}
        unused = dict((id(array), ref) for array, ref in allocated)
        for port, value in returned.items():
            value = as_port_value(value)
            if value.data is None:
                ref = None
            elif id(value.data) in unused:  # computed in place by output_array(): nothing to copy
                ref = unused.pop(id(value.data))
            elif id(value.data) in forward:  # an input passed on unchanged
                ref = forward[id(value.data)]
            else:
                ref = self.arena.put(value.data, f"{task}--{port}")
            wire[port] = {"ref": ref.to_dict() if ref else None, "meta": value.meta}
        self._unlink(unused.values())
        return wire

    def _unlink(self, refs: Any) -> None:
        for ref in refs:
            (self.arena.objects / ref.name).unlink(missing_ok=True)

    def _discard(self, task: str) -> None:
        """Unlink every object a failed task made (stored outputs and output_array buffers)."""
        for entry in os.scandir(self.arena.objects):
            if entry.name.startswith(f"{task}--"):
                Path(entry.path).unlink(missing_ok=True)


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
            conn.send_bytes(worker.handle(msg))
        elif op == protocol.PING:
            conn.send_bytes(protocol.encode(protocol.PONG))
        elif op == protocol.SHUTDOWN:
            return


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
