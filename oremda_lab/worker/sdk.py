"""What an operator author uses: ``@operator`` and ``PortValue``.

An operator is one function over its inputs and parameters::

    from oremda_lab.worker.sdk import operator
    from scipy import ndimage

    @operator
    def gaussian_blur(inputs, params):
        image = inputs["image"]
        return {"image": ndimage.gaussian_filter(image.data, params["sigma"])}

``inputs`` maps port names to :class:`PortValue` (``data``: a read-only numpy view
or ``bytes``; ``meta``: a dict). Return a dict of port name to a ``PortValue``, an
ndarray or bytes (meta then empty). Messaging and shared memory stay hidden.
Parameters arrive with their defaults filled in. A stateful operator says so,
``@operator(stateful=True)``, and takes a third argument, a dict kept between runs;
it must copy any input it keeps, since input buffers are reused after the call.
"""

from __future__ import annotations

import contextvars
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oremda_lab.spec.operator import data_file

DATA_DIR_ENV = "OREMDA_DATA_DIR"
# Set by the worker around each call (in-process runtimes host several data folders).
current_data_dir: contextvars.ContextVar[str | None] = contextvars.ContextVar("oremda_data_dir", default=None)
current_allocator: contextvars.ContextVar[Callable[[tuple[int, ...], Any], Any] | None] = contextvars.ContextVar(
    "oremda_allocator", default=None
)


@dataclass(frozen=True)
class TaskContext:
    """The running task as the SDK sees it: where its cancel marker would be, how to report progress."""

    task: str
    session: str
    send_progress: Callable[[float, str], None] | None = None


current_task: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar("oremda_task", default=None)
# A partition's task id is "<node task>~p<i>": the node task's marker cancels every partition.
PART_SEPARATOR = "~"


@dataclass
class PortValue:
    """The value on one port: ``data`` (ndarray or bytes, or None) and ``meta``."""

    data: Any = None
    meta: dict[str, Any] = field(default_factory=dict)


Function = Callable[..., dict[str, Any]]


def operator(func: Function | None = None, *, stateful: bool = False) -> Any:
    """Mark ``func(inputs, params[, state]) -> outputs`` as the operator's entry point."""

    def mark(f: Function) -> Function:
        f.oremda_operator = {"stateful": stateful}  # type: ignore[attr-defined]
        return f

    return mark(func) if func is not None else mark


def as_port_value(value: Any) -> PortValue:
    """Normalize what an operator returned for one port."""
    if isinstance(value, PortValue):
        return value
    return PortValue(value, {})


def output_array(shape: Any, dtype: Any = float) -> Any:
    """A writable array to compute an output into; returning it costs no copy.

    In a worker it lives in shared memory already; elsewhere it is ``np.empty``.

    Examples
    --------
    >>> out = output_array((2, 3), "float32")
    >>> out.shape, out.dtype.name
    ((2, 3), 'float32')
    """
    import numpy as np

    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    allocate = current_allocator.get()
    array = allocate(shape, np.dtype(dtype)) if allocate else None
    return array if array is not None else np.empty(shape, dtype)


def stem_detector(
    shape: tuple[int, ...], params: dict[str, Any], *, empty_ring: bool = True
) -> tuple[float, float, tuple[float, float]]:
    """A virtual detector on 4D-STEM data of ``shape``: ``(inner, outer, (cy, cx))``, checked.

    Reads ``inner_radius`` (default 0), ``outer_radius`` and ``center`` ([y, x] on the
    detector, default ``(det_y // 2, det_x // 2)``) from ``params``, after checking that
    ``shape`` is (scan_y, scan_x, det_y, det_x). ``empty_ring=False`` refuses a ring of
    no width (outer == inner), which some libraries cannot draw. Plain Python: the same
    checks in every operator environment, whatever its numpy.

    Examples
    --------
    >>> stem_detector((4, 4, 32, 32), {"inner_radius": 3, "outer_radius": 8})
    (3.0, 8.0, (16.0, 16.0))
    >>> stem_detector((4, 4, 32, 32), {"outer_radius": 5, "inner_radius": 5}, empty_ring=False)
    Traceback (most recent call last):
    ValueError: outer_radius 5.0 must exceed inner_radius 5.0
    """
    shape = tuple(shape)
    if len(shape) != 4:
        raise ValueError(f"expected 4D-STEM data (scan_y, scan_x, det_y, det_x), got shape {shape}")
    inner, outer = float(params.get("inner_radius", 0)), float(params["outer_radius"])
    if outer < inner:
        raise ValueError(f"outer_radius {outer} is smaller than inner_radius {inner}")
    if outer == inner and not empty_ring:
        raise ValueError(f"outer_radius {outer} must exceed inner_radius {inner}")
    cy, cx = params.get("center") or (shape[2] // 2, shape[3] // 2)
    return inner, outer, (float(cy), float(cx))


def data_path(filename: str) -> Path:
    """Resolve a data file name against the engine's data folder.

    Refuses (ValueError) names that lead outside it or to anything but a regular file
    (a FIFO or device would block or never end); see :func:`~oremda_lab.spec.operator.data_file`.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()); (folder / "a.tif").write_bytes(b"")
    0
    >>> token = current_data_dir.set(str(folder))
    >>> data_path("a.tif") == folder.resolve() / "a.tif"
    True
    >>> current_data_dir.reset(token)
    """
    return data_file(data_root(), filename)


def data_root() -> str:
    """The engine's data folder (what file parameters are relative to)."""
    return current_data_dir.get() or os.environ.get(DATA_DIR_ENV, ".")


def cancel_markers(session: str | Path, task: str) -> list[Path]:
    """The files whose presence cancels ``task``: its own marker and its node task's.

    Examples
    --------
    >>> [p.name for p in cancel_markers("/s", "t7-1~p2")]
    ['t7-1~p2', 't7-1']
    """
    names = dict.fromkeys([task, task.split(PART_SEPARATOR, 1)[0]])
    return [Path(session) / "cancel" / name for name in names]


def cancelled() -> bool:
    """Whether the running task was cancelled (a newer run supersedes it).

    Long operators check it between chunks of work and return early (raising is
    fine: the task ends as an error "cancelled" and is not cached). Costs a stat or two.
    Outside a worker it is always False.
    """
    context = current_task.get()
    return context is not None and any(p.exists() for p in cancel_markers(context.session, context.task))


_last_report: contextvars.ContextVar[float] = contextvars.ContextVar("oremda_last_report", default=0.0)
_REPORT_INTERVAL = 0.1  # seconds: at most ten progress messages a second


def report_progress(fraction: float, message: str = "") -> None:
    """Tell the engine how far the running task is (``fraction`` in [0, 1]); shown on its node.

    Reports closer than a tenth of a second to the previous one are dropped (the last,
    ``fraction`` 1, never is). Outside a worker it does nothing.
    """
    context = current_task.get()
    if context is None or context.send_progress is None:
        return
    now = time.monotonic()
    if fraction < 1 and now - _last_report.get() < _REPORT_INTERVAL:
        return
    _last_report.set(now)
    context.send_progress(min(max(float(fraction), 0.0), 1.0), str(message))
