"""Shared-memory sessions: where port values live and who frees them.

State and policy
----------------
A session is one folder under the shared-memory root (``/dev/shm`` unless
``OREMDA_SHM_DIR`` says otherwise)::

    oremda-<pid>-<token>/
      owner.json   pid and start time of the owning (engine) process
      objects/     live values, one file each, named ``<task>--<port>``
      pool/        freed files kept for reuse, named ``<size>-<uuid>``

* Writers (workers, in any process or container that maps the folder) allocate a
  file for each output: a pooled file of fitting size when there is one (taken by an
  atomic rename, so writers need no lock), else a new one. Reused files have their
  pages already, which makes filling them ~10x faster than fresh ones.
* The owner alone frees. A freed file goes back to the pool, unless a numpy view
  handed out in the owner's process still maps it; then it is unlinked instead, so a
  view never sees its bytes change. The pool is trimmed to ``pool_bytes``.
* The folder is removed by :meth:`Arena.close`, at interpreter exit, and, if the owner
  died without either, by :func:`sweep_stale` at the next start-up.
"""

from __future__ import annotations

import atexit
import json
import mmap
import os
import shutil
import socket
import tempfile
import uuid
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from oremda_lab.dataplane import arrow
from oremda_lab.dataplane.refs import ObjectRef

PREFIX = "oremda-"
DEFAULT_POOL_BYTES = 2 << 30
# A pooled file may be at most this much larger than the request (else it wastes memory).
_POOL_SLACK = 2.0


def shm_root() -> Path:
    """The shared-memory root: ``OREMDA_SHM_DIR``, else ``/dev/shm``, else the temp dir."""
    root = os.environ.get("OREMDA_SHM_DIR")
    if root:
        return Path(root)
    return Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())


class Arena:
    """A session's shared memory, seen from the owner (engine) or a writer (worker)."""

    def __init__(self, path: Path, owner: bool, pool_bytes: int = DEFAULT_POOL_BYTES):
        self.path = Path(path)
        self.owner = owner
        self.pool_bytes = pool_bytes
        self.objects = self.path / "objects"
        self.pool = self.path / "pool"
        self._views: dict[str, list[weakref.ref]] = {}
        self._closed = False

    @classmethod
    def create(cls, root: Path | None = None, pool_bytes: int = DEFAULT_POOL_BYTES) -> Arena:
        """Start a new session owned by this process (stale sessions are swept first)."""
        root = Path(root) if root else shm_root()
        sweep_stale(root)
        path = root / f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        for sub in (path, path / "objects", path / "pool", path / "run"):
            sub.mkdir(mode=0o777)
            os.chmod(sub, 0o777)  # containers write here under another uid
        owner = {"pid": os.getpid(), "started": _start_time(os.getpid()), "host": socket.gethostname()}
        (path / "owner.json").write_text(json.dumps(owner))
        arena = cls(path, owner=True, pool_bytes=pool_bytes)
        atexit.register(arena.close)
        return arena

    @classmethod
    def attach(cls, path: str | Path) -> Arena:
        """Join an existing session as a writer."""
        path = Path(path)
        if not (path / "objects").is_dir():
            raise FileNotFoundError(f"no oremda session at {path}")
        return cls(path, owner=False)

    # -- writing ---------------------------------------------------------------

    def put(self, data: Any, name: str) -> ObjectRef:
        """Store an ndarray (or bytes) under ``name``; returns its reference."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            payload = memoryview(data).cast("B")
            with self._allocate(name, payload.nbytes) as buffer:
                np.frombuffer(buffer, np.uint8, payload.nbytes)[:] = np.frombuffer(payload, np.uint8)
            return ObjectRef(name, "bytes", payload.nbytes)
        array = np.asarray(data)
        if array.dtype.hasobject:
            raise TypeError(f"cannot share an array of Python objects (dtype {array.dtype})")
        tensor, fallback = arrow.as_tensor(array)
        size = arrow.tensor_size(tensor)
        with self._allocate(name, size) as buffer:
            arrow.write_tensor(tensor, buffer)
        kind = "raw-tensor" if fallback else "tensor"
        return ObjectRef(name, kind, size, array.dtype.str, tuple(array.shape))

    def _allocate(self, name: str, size: int) -> _Mapping:
        target = self.objects / name
        for candidate in self._pool_candidates(size):
            try:
                os.rename(candidate, target)
                break
            except FileNotFoundError:
                continue  # another writer took it first
        else:
            fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                os.fchmod(fd, 0o666)
                os.ftruncate(fd, max(size, 1))
            finally:
                os.close(fd)
        return _Mapping(target, writable=True)

    def _pool_candidates(self, size: int) -> list[Path]:
        fitting = []
        for entry in os.scandir(self.pool):
            have = int(entry.name.split("-", 1)[0])
            if size <= have <= max(size * _POOL_SLACK, size + 4096):
                fitting.append((have, entry.path))
        return [Path(p) for _, p in sorted(fitting)]

    # -- reading ---------------------------------------------------------------

    def get(self, ref: ObjectRef) -> Any:
        """A zero-copy, read-only numpy view of ``ref`` (``bytes`` for binary values)."""
        mapping = _Mapping(self.objects / ref.name, writable=False)
        if self.owner:
            self._views.setdefault(ref.name, []).append(weakref.ref(mapping.mm))
        buffer = mapping.buffer
        if ref.kind == "bytes":
            return buffer.to_pybytes()[: ref.nbytes]
        return arrow.read_array(buffer, ref.dtype, ref.shape, fallback=ref.kind == "raw-tensor")

    # -- freeing (owner only) ----------------------------------------------------

    def free(self, ref: ObjectRef | str) -> None:
        """Release an object: back to the pool, or unlinked while a view still maps it."""
        name = ref.name if isinstance(ref, ObjectRef) else ref
        path = self.objects / name
        views = self._views.pop(name, [])
        try:
            if any(view() is not None for view in views):
                path.unlink()
                return
            size = path.stat().st_size
            os.rename(path, self.pool / f"{size}-{uuid.uuid4().hex}")
        except FileNotFoundError:
            return
        self._trim_pool()

    def discard(self, prefix: str) -> None:
        """Remove objects whose name starts with ``prefix`` (a failed task's partial outputs)."""
        for entry in os.scandir(self.objects):
            if entry.name.startswith(prefix):
                self.free(entry.name)

    def _trim_pool(self) -> None:
        entries = sorted(os.scandir(self.pool), key=lambda e: e.stat().st_mtime, reverse=True)
        total = 0
        for entry in entries:
            total += int(entry.name.split("-", 1)[0])
            if total > self.pool_bytes:
                Path(entry.path).unlink(missing_ok=True)

    def live(self) -> list[str]:
        """Names of the live objects."""
        return sorted(e.name for e in os.scandir(self.objects))

    def close(self) -> None:
        """Remove the session folder (owner) or forget it (writer)."""
        if self._closed:
            return
        self._closed = True
        if self.owner:
            shutil.rmtree(self.path, ignore_errors=True)
            atexit.unregister(self.close)

    def __enter__(self) -> Arena:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Mapping:
    """A file mapped into memory, exposed as an Arrow buffer; closes when unused."""

    def __init__(self, path: Path, writable: bool):
        fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
            self.mm = mmap.mmap(fd, size, access=access)
        finally:
            os.close(fd)
        self.buffer = pa.py_buffer(self.mm)

    def __enter__(self) -> pa.Buffer:
        return self.buffer

    def __exit__(self, *exc: object) -> None:
        del self.buffer
        try:
            self.mm.close()
        except BufferError:
            pass  # a writer kept an export alive; the mapping goes with it


def sweep_stale(root: Path | None = None) -> list[Path]:
    """Remove sessions whose owner process is gone; returns what was removed."""
    root = Path(root) if root else shm_root()
    removed = []
    if not root.is_dir():
        return removed
    host = socket.gethostname()
    for path in root.glob(f"{PREFIX}*"):
        try:
            owner = json.loads((path / "owner.json").read_text())
        except (OSError, ValueError):
            continue  # being created right now, or not ours
        if owner.get("host") != host:
            continue
        if _start_time(owner["pid"]) != owner.get("started"):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (tells a live owner from a reused pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]
