"""Invoking an operator: the one implementation every worker uses.

A worker process (:mod:`oremda_lab.worker.main`) and an MPI rank
(:mod:`oremda_lab.worker.rank`) both run an operator through these functions:

* :func:`read_inputs`: wire values -> :class:`PortValue` (read-only views of the session,
  or a :class:`~oremda_lab.dataplane.lazy.LazyArray` for a lazy value);
* :func:`call`: the function itself, with its data folder and ``output_array`` allocator
  set, its state when stateful, ``SystemExit`` turned into an error, and its outputs
  checked against the operator's description; lazy inputs are materialised by
  :func:`oremda_lab.dataplane.lazy.call` (in chunks for a data-parallel operator), with
  the task's progress and cancel hooks (``sdk.report_progress``, ``sdk.cancelled``) set;
* :func:`reply`: outputs -> objects in the session and the RESULT message, an input
  returned unchanged passed on by reference, an ``output_array`` buffer taken as it is;
* :func:`failed`: the ERROR message, after every object the task made is unlinked.

:func:`invoke` is the four in a row, what a worker does for one RUN.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from oremda_lab.dataplane import lazy
from oremda_lab.dataplane.arena import Arena
from oremda_lab.dataplane.refs import ObjectRef
from oremda_lab.spec.operator import OperatorSpec
from oremda_lab.worker import protocol
from oremda_lab.worker.sdk import (
    PortValue,
    TaskContext,
    as_port_value,
    cancelled,
    current_allocator,
    current_data_dir,
    current_task,
    data_root,
    report_progress,
)

Allocated = list[tuple[Any, ObjectRef]]
View = Callable[[str, ObjectRef], Any]  # (port, reference) -> the data the operator sees


class OperatorError(Exception):
    """The operator failed (raised, exited, or returned what its description does not allow)."""

    def __init__(self, message: str, traceback: str = ""):
        super().__init__(message)
        self.message = message
        self.traceback = traceback


def stateful(spec: OperatorSpec, func: Any) -> bool:
    """Whether the operator takes a state dict (``operator.json`` or ``@operator(stateful=True)``)."""
    return bool(spec.stateful or getattr(func, "oremda_operator", {}).get("stateful", False))


def read_inputs(wire: Mapping[str, dict[str, Any]], view: View) -> dict[str, PortValue]:
    """The operator's inputs from their wire values; ``view(port, ref)`` maps an object (e.g. ``Arena.get``).

    A lazy value (C4) becomes its :class:`~oremda_lab.dataplane.lazy.LazyArray`; :func:`call` reads it.
    """
    return {
        port: PortValue(
            view(port, ObjectRef.from_dict(value["ref"])) if value.get("ref") else lazy.from_wire(value),
            value.get("meta", {}),
        )
        for port, value in wire.items()
    }


def passed_on(inputs: Mapping[str, PortValue], wire: Mapping[str, dict[str, Any]]) -> dict[int, ObjectRef]:
    """Input arrays by identity -> their references: an input returned as it is goes on without a copy.

    Identities are stable while the inputs live, and the call's results exist before they go.
    """
    return {id(v.data): ObjectRef.from_dict(wire[p]["ref"]) for p, v in inputs.items() if wire[p].get("ref")}


def allocator(arena: Arena, task: str, allocated: Allocated) -> Callable[[tuple[int, ...], Any], Any]:
    """The ``output_array`` allocator of one task: buffers in the session, noted in ``allocated``."""

    def allocate(shape: tuple[int, ...], dtype: Any) -> Any:
        made = arena.allocate_array(f"{task}--alloc{len(allocated)}", shape, dtype)
        if made is None:
            return None
        allocated.append(made)
        return made[0]

    return allocate


def call(
    spec: OperatorSpec,
    func: Any,
    inputs: dict[str, PortValue],
    params: dict[str, Any],
    *,
    state: dict[str, Any] | None = None,
    data_dir: str | None = None,
    allocate: Callable[[tuple[int, ...], Any], Any] | None = None,
    task: TaskContext | None = None,
    budget_bytes: int | None = None,
) -> dict[str, PortValue]:
    """Run the operator's function once; its checked outputs, or :class:`OperatorError`.

    ``state`` is the dict a stateful operator keeps between runs (the caller holds one
    per node); ``inputs`` is emptied once the function returns, so no view of an input
    outlives the call here. ``task`` says where the task's cancel marker is and how
    its progress is sent; ``budget_bytes`` is the memory budget lazy inputs are read within.
    """
    tokens = current_data_dir.set(data_dir), current_allocator.set(allocate), current_task.set(task)
    try:
        rest = (params, state if state is not None else {}) if stateful(spec, func) else (params,)
        context = lazy.Context(data_root(), budget_bytes, lazy.workers_env(),
                               report_progress, cancelled)  # fmt: skip
        returned = lazy.call(lambda values: func(values, *rest), inputs, spec.parallel, context, as_port_value)
    except SystemExit as e:
        raise OperatorError(f"operator called sys.exit({e.code})") from None
    except Exception as e:
        raise OperatorError(f"{type(e).__name__}: {e}", traceback.format_exc()) from None
    finally:
        current_data_dir.reset(tokens[0])
        current_allocator.reset(tokens[1])
        current_task.reset(tokens[2])
    return check_outputs(spec, returned)


def check_outputs(spec: OperatorSpec, returned: Any) -> dict[str, PortValue]:
    """What the operator returned, as port values, if its description allows it."""
    if not isinstance(returned, dict):
        raise OperatorError(f"TypeError: operator returned {type(returned).__name__}, not a dict of outputs")
    unknown = set(returned) - set(spec.outputs)
    if unknown:
        raise OperatorError(f"KeyError: operator returned unknown outputs {sorted(unknown)}")
    missing = [p for p, port in spec.outputs.items() if port.required and p not in returned]
    if missing:
        raise OperatorError(f"KeyError: operator did not return outputs {missing}")
    return {port: as_port_value(value) for port, value in returned.items()}


def reply(
    arena: Arena,
    task: str,
    outputs: Mapping[str, PortValue],
    started: float,
    *,
    allocated: Sequence[tuple[Any, ObjectRef]] = (),
    forward: Mapping[int, ObjectRef] | None = None,
) -> bytes:
    """Store ``outputs`` in the session and answer RESULT (or ERROR, leaving nothing behind)."""
    try:
        unused = {id(array): ref for array, ref in allocated}
        forward = forward or {}
        wire = {}
        for port, value in outputs.items():
            if isinstance(value.data, lazy.LazyArray):  # a reference to a file goes on as it is
                wire[port] = lazy.to_wire(value.data, value.meta)
                continue
            if value.data is None:
                ref = None
            elif id(value.data) in unused:  # computed in place by output_array(): nothing to copy
                ref = unused.pop(id(value.data))
            elif id(value.data) in forward:  # an input passed on unchanged
                ref = forward[id(value.data)]
            else:
                ref = arena.put(value.data, f"{task}--{port}")
            wire[port] = {"ref": ref.to_dict() if ref else None, "meta": value.meta}
        for ref in unused.values():
            (arena.objects / ref.name).unlink(missing_ok=True)
        try:
            return protocol.encode(protocol.RESULT, task=task, outputs=wire, duration_s=time.perf_counter() - started)
        except (TypeError, ValueError) as e:
            raise OperatorError(f"TypeError: output meta is not JSON-serialisable: {e}") from None
    except Exception as e:
        return failed(arena, task, e)


def error_fields(error: BaseException) -> dict[str, str]:
    """``{"error", "traceback"}`` of a failure, as an ERROR message carries them."""
    if isinstance(error, OperatorError):
        return {"error": error.message, "traceback": error.traceback}
    return {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}


def failed(arena: Arena | None, task: str, error: BaseException | dict[str, str], **fields: Any) -> bytes:
    """Unlink every object the task made (outputs, ``output_array`` buffers); answer ERROR."""
    if arena is not None:
        discard(arena, task)
    described = error if isinstance(error, dict) else error_fields(error)
    return protocol.encode(protocol.ERROR, task=task, **described, **fields)


def discard(arena: Arena, task: str) -> None:
    """Unlink the objects named after ``task`` (what a failed task made)."""
    for entry in os.scandir(arena.objects):
        if entry.name.startswith(f"{task}--"):
            Path(entry.path).unlink(missing_ok=True)


def invoke(
    spec: OperatorSpec,
    func: Any,
    arena: Arena,
    msg: Mapping[str, Any],
    *,
    state: dict[str, Any] | None = None,
    data_dir: str | None = None,
    view: View | None = None,
    send_progress: Callable[[float, str], None] | None = None,
) -> bytes:
    """Answer one RUN message ``{task, params, inputs}``: RESULT or ERROR, never an exception.

    ``send_progress(fraction, message)`` carries the operator's progress reports (C2).
    """
    task = msg["task"]
    started = time.perf_counter()
    allocated: Allocated = []
    try:
        inputs = read_inputs(msg["inputs"], view or (lambda _port, ref: arena.get(ref)))
        forward = passed_on(inputs, msg["inputs"])
        outputs = call(
            spec, func, inputs, msg["params"], state=state, data_dir=data_dir,
            allocate=allocator(arena, task, allocated), task=TaskContext(task, str(arena.path), send_progress),
            budget_bytes=arena.budget_bytes,
        )  # fmt: skip
        del inputs  # drop input views before the engine may reuse their buffers
    except Exception as e:
        return failed(arena, task, e)
    return reply(arena, task, outputs, started, allocated=allocated, forward=forward)
