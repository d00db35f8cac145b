"""Lazy data: a reference to an array in a file, read where (and when) it is processed.

A 4D-STEM acquisition can be larger than memory. A reader then returns a
:class:`LazyArray` (the file's path relative to the data folder, its format, byte
offset, dtype, shape, storage chunks, HDF5 dataset path) instead of the bytes. On the
wire it is a small JSON object (``{"ref": None, "lazy": {...}, "meta": {...}}``),
never bytes in shared memory.

State and policy
----------------
* A LazyArray may stand for a block of rows (``rows``: start, stop along axis 0) of
  the stored array: the part one worker or rank processes.
* :func:`call` is the one place where a worker materialises lazy inputs (the worker
  and the MPI rank program both call it). For a data-parallel operator (``parallel``
  in operator.json) whose split input is lazy, it reads the part in chunks of at most
  :func:`chunk_bytes`, calls the operator on each chunk and joins the chunk results
  with the declared join method (``sum``, ``max``, ``min``, ``concatenate``,
  ``first``); it reports progress and stops between chunks when cancelled. Every
  chunk is read into one buffer, which the process keeps for the next call (the next
  partition) and releases :data:`KEEP_SECONDS` after the last. A file larger than the
  memory available is read with drop-behind (:func:`stays_cached`). Any other
  lazy input is read whole, and only if it fits the memory budget: else a clear
  :class:`MemoryBudgetExceeded`.
* Formats: ``npy`` and ``raw`` (C-order bytes at an offset; a whole read of ``npy``
  is a read-only memory map), ``hdf5`` (h5py, any chunking), ``mib`` (Quantum
  Detectors Merlin: a header before every frame, big-endian pixels) and ``dm4``
  (rosettasciio's lazy reader). A file shorter than its description is an error
  naming the file, never a silently short array.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from oremda_lab.spec.operator import data_file

FORMATS = ("npy", "raw", "hdf5", "mib", "dm4")
JOIN_METHODS = ("sum", "max", "min", "concatenate", "stack", "first")
# The chunk one worker reads at a time never exceeds this, whatever the budget: larger
# chunks gain nothing in throughput and cost memory.
MAX_CHUNK_BYTES = 256 << 20
# A worker's chunk is this share of its part of the budget: operators hold a few
# working copies of a chunk (a float32 conversion, an FFT's complex spectrum).
CHUNK_SHARE = 8
# A worker keeps its chunk buffer this long after a chunked call, for the next partition
# of the same node: fresh memory faults in again (and, when the page cache fills the
# machine, first reclaims it), which costs a read from the cache several times over.
KEEP_SECONDS = 2.0
PAGE = mmap.PAGESIZE


class MemoryBudgetExceeded(MemoryError):
    """A whole lazy array was asked for that does not fit the memory budget."""


class TruncatedFile(ValueError):
    """A file is shorter than its header (or the description given) says."""


class Cancelled(Exception):
    """The run was cancelled (a newer one supersedes it) between two chunks."""


@dataclass(frozen=True)
class LazyArray:
    """An array in a file of the data folder, not yet read.

    ``path`` is relative to the data folder; ``shape``/``dtype`` describe the stored
    array (``dtype`` may be big-endian: reads return native byte order); ``offset``
    is the byte offset of the first element (``npy``, ``raw``) or of the first frame
    header (``mib``, whose frames each follow a ``frame_header``-byte header);
    ``dataset`` names the HDF5 dataset; ``chunks`` is the storage chunking, if any;
    ``rows`` restricts the array to rows ``[start, stop)`` of axis 0.

    Examples
    --------
    >>> a = LazyArray("scan.npy", "npy", "<u2", (8, 8, 16, 16), offset=128)
    >>> a.part(1, 3).rows, a.part(1, 3).shape
    ((3, 6), (3, 8, 16, 16))
    >>> LazyArray.from_dict(a.to_dict()) == a
    True
    """

    path: str
    format: str
    dtype: str
    stored_shape: tuple[int, ...]
    offset: int = 0
    chunks: tuple[int, ...] = ()
    dataset: str = ""
    frame_header: int = 0
    rows: tuple[int, int] = field(default=(0, -1))

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown lazy format {self.format!r}; known: {', '.join(FORMATS)}")
        if not self.stored_shape:
            raise ValueError("a lazy array needs at least one axis")
        start, stop = self.rows
        stop = self.stored_shape[0] if stop < 0 else stop
        if not 0 <= start <= stop <= self.stored_shape[0]:
            raise ValueError(f"rows {self.rows} are outside axis 0 of length {self.stored_shape[0]}")
        object.__setattr__(self, "rows", (start, stop))
        object.__setattr__(self, "stored_shape", tuple(int(n) for n in self.stored_shape))
        object.__setattr__(self, "chunks", tuple(int(n) for n in self.chunks))

    # -- what it stands for ----------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the array this reference stands for (its rows only)."""
        return (self.rows[1] - self.rows[0], *self.stored_shape[1:])

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.stored_shape)

    @property
    def row_bytes(self) -> int:
        """Bytes of one row (one index of axis 0) once read."""
        return int(np.prod(self.stored_shape[1:], dtype=np.int64)) * np.dtype(self.dtype).itemsize

    @property
    def nbytes(self) -> int:
        """Bytes of the whole (restricted) array once read."""
        return self.shape[0] * self.row_bytes

    def part(self, index: int, parts: int) -> LazyArray:
        """Part ``index`` of ``parts`` near-equal contiguous blocks of rows."""
        start, stop = self.rows
        base, extra = divmod(stop - start, parts)
        first = start + index * base + min(index, extra)
        return replace(self, rows=(first, first + base + (1 if index < extra else 0)))

    def to_dict(self) -> dict[str, Any]:
        """Plain form for a control message."""
        return {
            "path": self.path, "format": self.format, "dtype": self.dtype, "shape": list(self.stored_shape),
            "offset": self.offset, "chunks": list(self.chunks), "dataset": self.dataset,
            "frame_header": self.frame_header, "rows": list(self.rows),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LazyArray:
        """Inverse of :meth:`to_dict`."""
        return cls(
            d["path"], d["format"], d["dtype"], tuple(d["shape"]), int(d.get("offset", 0)),
            tuple(d.get("chunks", ())), d.get("dataset", ""), int(d.get("frame_header", 0)),
            tuple(d.get("rows", (0, -1))),  # type: ignore[arg-type]
        )  # fmt: skip

    # -- reading ---------------------------------------------------------------------

    def read(
        self,
        data_dir: str | Path,
        start: int = 0,
        stop: int | None = None,
        scratch: Scratch | None = None,
        drop: bool = False,
    ) -> np.ndarray:
        """Rows ``[start, stop)`` of this array (relative to :attr:`rows`), native byte order.

        ``scratch`` lends the memory to read into (``npy``, ``raw``, ``mib``): a chunk loop
        reuses one buffer instead of faulting in a fresh one per chunk. ``drop``: the
        bytes read leave the page cache at once (see :func:`stays_cached`). Raises
        ValueError when the file is shorter than described (truncated).
        """
        stop = self.shape[0] if stop is None else stop
        if not 0 <= start <= stop <= self.shape[0]:
            raise IndexError(f"rows {start}:{stop} are outside this array's {self.shape[0]} rows")
        first, last = self.rows[0] + start, self.rows[0] + stop
        path = data_file(data_dir, self.path)
        if self.format in ("npy", "raw"):
            array = _read_bytes(path, self.offset + first * self.row_bytes, (last - first, *self.stored_shape[1:]),
                                np.dtype(self.dtype), scratch, drop)  # fmt: skip
        elif self.format == "mib":
            array = self._read_mib(path, first, last, scratch, drop)
        elif self.format == "hdf5":
            import h5py

            with h5py.File(path, "r") as f:
                array = np.asarray(f[self.dataset][first:last])
        else:  # dm4: rosettasciio maps the file and gives a dask array
            array = np.asarray(_dm4_dask(path)[first:last].compute())
        return _native(array)

    def _read_mib(self, path: Path, first: int, last: int, scratch: Scratch | None, drop: bool) -> np.ndarray:
        frame_shape = self.stored_shape[-2:]
        per_row = int(np.prod(self.stored_shape[1:-2], dtype=np.int64))
        frame = np.dtype([("header", f"V{self.frame_header}"), ("data", np.dtype(self.dtype), frame_shape)])
        raw = _read_bytes(
            path, self.offset + first * per_row * frame.itemsize, ((last - first) * per_row,), frame, scratch, drop
        )
        return np.ascontiguousarray(raw["data"]).reshape(last - first, *self.stored_shape[1:])

    def whole(self, data_dir: str | Path, budget_bytes: int | None) -> np.ndarray:
        """The whole array, if it fits ``budget_bytes`` (``npy``: a read-only memory map).

        Raises :class:`MemoryBudgetExceeded` otherwise, saying what would help.
        """
        if budget_bytes is not None and self.nbytes > budget_bytes:
            raise MemoryBudgetExceeded(
                f"{self.path} ({_size(self.nbytes)}, shape {self.shape}) is larger than the memory budget "
                f"({_size(budget_bytes)}): only a data-parallel operator (parallel split in operator.json) "
                "reads it in parts; or raise the budget (OREMDA_SHM_BUDGET / Engine(shm_bytes=))"
            )
        if self.format == "npy" and np.dtype(self.dtype).isnative:
            path = data_file(data_dir, self.path)
            _check_size(path, self.offset + self.stored_shape[0] * self.row_bytes)
            mapped = np.memmap(path, self.dtype, "r", self.offset, self.stored_shape)
            return mapped[self.rows[0] : self.rows[1]]
        return self.read(data_dir)

    def chunk_rows(self, chunk_bytes: int) -> int:
        """Rows per chunk so that one chunk takes at most ``chunk_bytes`` (at least one row).

        Raises MemoryBudgetExceeded when a single row is larger.
        """
        if self.row_bytes > chunk_bytes:
            raise MemoryBudgetExceeded(
                f"one row of {self.path} ({_size(self.row_bytes)}) is larger than a worker's chunk "
                f"({_size(chunk_bytes)}) in the memory budget; raise the budget or use fewer workers"
            )
        rows = chunk_bytes // self.row_bytes
        if self.chunks and self.chunks[0] < rows:  # whole storage chunks: each is decompressed once
            rows -= rows % self.chunks[0]
        return max(1, rows)

    def chunks_of(self, chunk_bytes: int) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` row ranges of the chunks of this array."""
        step = self.chunk_rows(chunk_bytes)
        for start in range(0, self.shape[0], step):
            yield start, min(start + step, self.shape[0])


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def _check_size(path: Path, needed: int) -> None:
    size = path.stat().st_size
    if size < needed:
        raise TruncatedFile(f"{path.name} is truncated: {size} bytes where {needed} are needed")


class Scratch:
    """One reusable read buffer, grown when a read needs more."""

    def __init__(self) -> None:
        self.buffer = np.empty(0, np.uint8)

    def array(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialised array of ``shape`` and ``dtype`` over the buffer."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if self.buffer.size < nbytes:
            self.buffer = np.empty(nbytes, np.uint8)
        return self.buffer[:nbytes].view(dtype).reshape(shape)


class _Kept:
    """The process's chunk buffer: lent to one :func:`call` at a time, released :data:`KEEP_SECONDS` after."""

    def __init__(self) -> None:
        self.scratch = Scratch()
        self.lock = threading.Lock()
        self.busy = False
        self.lent = 0  # counts loans: a timer releases only after the last one

    @contextmanager
    def lend(self) -> Iterator[Scratch]:
        """The kept buffer, or a fresh one while another call (another thread) has it."""
        with self.lock:
            mine, self.busy = not self.busy, True
            self.lent += 1
        if not mine:
            yield Scratch()
            return
        try:
            yield self.scratch
        finally:
            with self.lock:
                self.busy, loan = False, self.lent
            timer = threading.Timer(KEEP_SECONDS, self._release, (loan,))
            timer.daemon = True
            timer.start()

    def _release(self, loan: int) -> None:
        with self.lock:
            if not self.busy and loan == self.lent:
                self.scratch = Scratch()


_KEPT = _Kept()


def _read_bytes(
    path: Path,
    offset: int,
    shape: tuple[int, ...],
    dtype: np.dtype,
    scratch: Scratch | None = None,
    drop: bool = False,
) -> np.ndarray:
    """``shape`` elements of ``dtype`` at ``offset`` of ``path``, read into a buffer (no mapping).

    ``drop``: the file does not fit the page cache; its pages just read leave it at once.
    """
    out = scratch.array(shape, dtype) if scratch is not None else np.empty(shape, dtype)
    view = memoryview(out.reshape(-1).view(np.uint8))
    advise = getattr(os, "posix_fadvise", None)  # not on macOS
    with open(path, "rb", buffering=0) as f:
        if advise:
            advise(f.fileno(), offset, len(view), os.POSIX_FADV_SEQUENTIAL)  # a larger readahead
        f.seek(offset)
        got = 0
        while got < len(view):
            n = f.readinto(view[got:])
            if not n:
                raise TruncatedFile(
                    f"{path.name} is truncated: {offset + got} bytes where {offset + len(view)} are needed"
                )
            got += n
        # Whole pages only go; the one the next rows share (read next, then dropped) stays for now.
        first, end = offset // PAGE * PAGE, (offset + len(view)) // PAGE * PAGE
        if drop and advise and end > first:  # a length of 0 would mean "to the end of the file"
            advise(f.fileno(), first, end - first, os.POSIX_FADV_DONTNEED)
    return out


def _native(array: np.ndarray) -> np.ndarray:
    if array.dtype.isnative:
        return array
    return array.byteswap(inplace=True).view(array.dtype.newbyteorder("="))


def _dm4_dask(path: Path) -> Any:
    from rsciio.digitalmicrograph import file_reader

    found = file_reader(str(path), lazy=True)
    return found[0]["data"]


# -- making references ---------------------------------------------------------------


def npy(data_dir: str | Path, name: str) -> LazyArray:
    """A reference to the array of a ``.npy`` file (C order, no pickled objects)."""
    path = data_file(data_dir, name)
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"{name}: .npy format version {version} cannot be read in parts")
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = header(f)
        offset = f.tell()
    if fortran and len(shape) > 1:
        raise ValueError(f"{name} is stored in Fortran order; only C-order arrays can be read in parts")
    if dtype.hasobject:
        raise ValueError(f"{name} holds Python objects, which are never read")
    found = LazyArray(name, "npy", dtype.str, tuple(shape), offset)
    _check_size(path, offset + found.nbytes)
    return found


def raw(data_dir: str | Path, name: str, dtype: str, shape: tuple[int, ...], offset: int = 0) -> LazyArray:
    """A reference to C-order binary data of ``dtype`` and ``shape`` at ``offset`` of a file."""
    found = LazyArray(name, "raw", np.dtype(dtype).str, tuple(shape), offset)
    _check_size(data_file(data_dir, name), offset + found.nbytes)
    return found


def hdf5(data_dir: str | Path, name: str, dataset: str) -> LazyArray:
    """A reference to an HDF5 dataset (chunked or contiguous)."""
    import h5py

    with h5py.File(data_file(data_dir, name), "r") as f:
        node = f[dataset]
        if not isinstance(node, h5py.Dataset):
            raise ValueError(f"{name}:{dataset} is not a dataset")
        return LazyArray(name, "hdf5", node.dtype.str, node.shape, chunks=node.chunks or (), dataset=node.name)


def emd_datasets(data_dir: str | Path, name: str) -> list[str]:
    """Paths of the data arrays of a Berkeley EMD file (groups with ``emd_group_type`` 1), in file order."""
    import h5py

    found: list[str] = []
    with h5py.File(data_file(data_dir, name), "r") as f:

        def visit(path: str, node: Any) -> None:
            if isinstance(node, h5py.Group) and int(node.attrs.get("emd_group_type", 0)) == 1 and "data" in node:
                found.append(f"/{path}/data")

        f.visititems(visit)
    return found


def mib(data_dir: str | Path, name: str, scan_shape: tuple[int, ...] | None = None) -> LazyArray:
    """A reference to a Quantum Detectors Merlin ``.mib`` file.

    Every frame is an ASCII header (comma-separated: ``MQ1``, sequence number, header
    bytes, chips, width, height, pixel type ``U08``/``U16``/``U32``, ...) followed by
    big-endian pixels. The file does not say the scan shape: ``scan_shape`` gives it
    (default: square when the frame count is a square, else a flat list of frames).
    Raw (``R64``) counter data is not supported.
    """
    path = data_file(data_dir, name)
    with open(path, "rb") as f:
        head = f.read(384).decode("ascii", errors="replace").split(",")
    if len(head) < 8 or head[0] != "MQ1":
        raise ValueError(f"{name} is not a Quantum Detectors MIB file (no MQ1 header)")
    header_bytes, width, height, depth = int(head[2]), int(head[4]), int(head[5]), head[6]
    dtypes = {"U01": ">u1", "U08": ">u1", "U16": ">u2", "U32": ">u4"}
    if depth not in dtypes:
        raise ValueError(f"{name}: MIB pixel type {depth!r} is not supported (only {', '.join(dtypes)})")
    frame_bytes = header_bytes + width * height * np.dtype(dtypes[depth]).itemsize
    frames = path.stat().st_size // frame_bytes
    if scan_shape:
        if int(np.prod(scan_shape)) > frames:
            raise TruncatedFile(f"{name} is truncated: {frames} frames, fewer than a scan of {tuple(scan_shape)}")
        nav = tuple(int(n) for n in scan_shape)
    else:
        side = int(round(frames**0.5))
        nav = (side, side) if side * side == frames else (frames,)
    return LazyArray(name, "mib", dtypes[depth], (*nav, height, width), 0, frame_header=header_bytes)


def dm4(data_dir: str | Path, name: str) -> LazyArray:
    """A reference to the first dataset of a DigitalMicrograph file, read with rosettasciio's lazy reader."""
    data = _dm4_dask(data_file(data_dir, name))
    return LazyArray(name, "dm4", np.dtype(data.dtype).str, tuple(data.shape), chunks=tuple(c[0] for c in data.chunks))


# -- the wire ------------------------------------------------------------------------


def to_wire(value: LazyArray, meta: dict[str, Any]) -> dict[str, Any]:
    """The wire value of a lazy output."""
    return {"ref": None, "lazy": value.to_dict(), "meta": meta}


def from_wire(wire: dict[str, Any]) -> LazyArray | None:
    """The LazyArray a wire value carries, or None."""
    lazy = wire.get("lazy")
    return LazyArray.from_dict(lazy) if lazy else None


# -- the budget ----------------------------------------------------------------------


def chunk_bytes(budget_bytes: int | None, workers: int = 1) -> int:
    """Bytes one of ``workers`` reads at a time within ``budget_bytes``.

    Examples
    --------
    >>> chunk_bytes(64 << 20, 2)
    4194304
    """
    if budget_bytes is None:
        return MAX_CHUNK_BYTES
    return max(1, min(MAX_CHUNK_BYTES, budget_bytes // (CHUNK_SHARE * max(1, workers))))


# -- joining partial results ---------------------------------------------------------


def join_method(parallel: dict[str, Any] | None, port: str) -> tuple[str, int | None]:
    """The join method and axis declared for output ``port`` (default ``stack``)."""
    split_axis = ((parallel or {}).get("split") or {}).get("axis", 0)
    how = ((parallel or {}).get("join") or {}).get(port, "stack")
    how = {"method": how} if isinstance(how, str) else dict(how)
    method = how.get("method", "stack")
    if method not in JOIN_METHODS:
        raise ValueError(f"output {port!r}: join method {method!r} is not one of {', '.join(JOIN_METHODS)}")
    return method, how.get("axis", split_axis)


class Joiner:
    """Joins the values of one output port from successive parts (chunks or workers)."""

    def __init__(self, method: str, axis: int | None, port: str):
        self.method, self.axis, self.port = method, axis, port
        self.parts: list[Any] = []
        self.total: np.ndarray | None = None
        self.meta: dict[str, Any] | None = None

    def add(self, data: Any, meta: dict[str, Any]) -> None:
        """Take one part's value (in part order)."""
        if self.meta is None:
            self.meta = meta
        if self.method == "first" or not isinstance(data, np.ndarray):
            if not self.parts:
                self.parts.append(data)
            return
        if self.method in ("sum", "max", "min"):
            if self.total is not None and self.total.shape != data.shape:
                raise ValueError(f"output {self.port!r} has different shapes in different parts; cannot {self.method}")
            if self.total is None:
                self.total = np.array(data)
            else:
                {"sum": np.add, "max": np.maximum, "min": np.minimum}[self.method](self.total, data, out=self.total)
        else:
            self.parts.append(np.array(data))

    def result(self) -> Any:
        """The joined value."""
        if self.total is not None:
            return self.total
        if self.method in ("concatenate", "stack") and self.parts and isinstance(self.parts[0], np.ndarray):
            if self.method == "stack":
                return np.stack(self.parts)
            return np.concatenate(self.parts, axis=self.axis or 0)
        return self.parts[0] if self.parts else None


# -- the one place lazy inputs are materialised ---------------------------------------


@dataclass
class Context:
    """What :func:`call` needs from its host: the data folder, the budget, progress and cancel hooks.

    ``budget_bytes`` None: the default of :func:`memory_budget`.
    """

    data_dir: str | Path
    budget_bytes: int | None = None
    workers: int = 1
    progress: Callable[[float, str], None] | None = None
    cancelled: Callable[[], bool] | None = None


def call(
    invoke: Callable[[dict[str, Any]], dict[str, Any]],
    inputs: dict[str, Any],
    parallel: dict[str, Any] | None,
    context: Context,
    as_value: Callable[[Any], Any],
) -> dict[str, Any]:
    """Call ``invoke(inputs)`` with every lazy input materialised; returns its outputs.

    ``inputs`` maps ports to PortValue-like objects (``.data``, ``.meta``); ``as_value``
    normalises what the operator returned for a port. A data-parallel operator whose
    split input is lazy runs once per chunk (see the module docstring); every other
    lazy input is read whole within the budget.
    """
    split = (parallel or {}).get("split") or {}
    port = split.get("port")
    lazy = {p: v for p, v in inputs.items() if isinstance(v.data, LazyArray)}
    if not lazy:
        return invoke(inputs)
    budget = memory_budget(context.budget_bytes)
    if port in lazy and split.get("axis", 0) != 0:
        raise ValueError(f"input {port!r} is a lazy reference to a file: it splits along axis 0 only")
    chunked = port in lazy
    methods = {}
    if chunked:
        # Which outputs: any the operator may return; undeclared ones default to stack.
        methods = {p: join_method(parallel, p) for p in (parallel or {}).get("join", {})}
        chunked = all(m in ("sum", "max", "min", "concatenate", "first") for m, _ in methods.values())
    inputs = dict(inputs)
    for p, v in lazy.items():
        if not (chunked and p == port):
            inputs[p] = type(v)(v.data.whole(context.data_dir, budget), v.meta)
    if not chunked:
        return invoke(inputs)
    source, meta = lazy[port].data, lazy[port].meta
    ranges = list(source.chunks_of(chunk_bytes(budget, context.workers)))
    drop = not stays_cached(data_file(context.data_dir, source.path).stat().st_size)
    joiners: dict[str, Joiner] = {}
    # Every chunk is read into the same memory (kept for the next call): the operator must not keep it.
    with _KEPT.lend() as scratch:
        for i, (start, stop) in enumerate(ranges):
            if context.cancelled is not None and context.cancelled():
                raise Cancelled(f"cancelled after {i}/{len(ranges)} chunks")
            chunk = source.read(context.data_dir, start, stop, scratch, drop)
            chunk.flags.writeable = False  # as every input
            inputs[port] = type(lazy[port])(chunk, meta)
            del chunk
            returned = invoke(dict(inputs))
            if not isinstance(returned, dict):
                return returned  # the caller's output check says what is wrong
            inputs[port] = None
            for out, value in returned.items():
                value = as_value(value)
                if out not in methods:
                    raise ValueError(
                        f"output {out!r} has no join method in operator.json's parallel.join; a lazy input is "
                        "processed in chunks and every output must say how chunks join"
                    )
                joiner = joiners.get(out) or joiners.setdefault(out, Joiner(*methods[out], out))
                joiner.add(value.data, value.meta)
            del returned
            if context.progress is not None:
                context.progress((i + 1) / len(ranges), f"{stop}/{source.shape[0]} rows")
    return {out: type(lazy[port])(j.result(), j.meta or {}) for out, j in joiners.items()}


def meminfo() -> dict[str, int]:
    """``/proc/meminfo`` in bytes (``MemTotal``, ``MemAvailable``, ...); empty without it (macOS)."""
    try:
        with open("/proc/meminfo") as f:
            lines = [line.split(":", 1) for line in f]
    except OSError:
        return {}
    return {k: int(v.split()[0]) * (1024 if v.strip().endswith("kB") else 1) for k, v in lines}


def stays_cached(size: int) -> bool:
    """Whether a file of ``size`` bytes can stay in the page cache: at most the memory available now.

    A larger file is read with drop-behind (``POSIX_FADV_DONTNEED`` on each chunk once
    read): a re-run would find none of it cached anyway, the kernel then has no page cache
    to reclaim during the read, and other files' cached pages stay. A file that fits stays
    cached, and a re-run reads it from memory. Decided once per partition.

    Examples
    --------
    >>> stays_cached(1 << 20), stays_cached(1 << 60)
    (True, False)
    """
    available = meminfo().get("MemAvailable")
    return available is None or size <= available


def memory_budget(budget_bytes: int | None) -> int:
    """The memory budget: ``budget_bytes`` when set, else half the memory available now.

    ``OREMDA_SHM_BUDGET`` (bytes) or ``Engine(shm_bytes=)`` set it: one budget for the
    session's shared memory and the workers' chunk buffers.
    """
    if budget_bytes is not None:
        return budget_bytes
    available = meminfo().get("MemAvailable")
    return available // 2 if available is not None else 8 << 30  # no /proc (macOS): a conservative default


def workers_env() -> int:
    """How many workers share the budget on this machine (``OREMDA_PARALLEL_WORKERS``, else the CPU count)."""
    raw = os.environ.get("OREMDA_PARALLEL_WORKERS", "").strip()
    return max(1, int(raw)) if raw else max(1, os.cpu_count() or 1)
