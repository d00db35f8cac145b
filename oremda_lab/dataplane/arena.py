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
* Writers keep their mappings across tasks (:class:`_MapCache`, by inode), so a pooled
  buffer that comes back is written and read without new page faults or mmap calls.
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
from collections import OrderedDict
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
        self._maps = None if owner else _MapCache()
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
        owner = {**owner_record(), "host": socket.gethostname()}
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

    def allocate_array(self, name: str, shape: tuple[int, ...], dtype: Any) -> tuple[np.ndarray, ObjectRef] | None:
        """A writable array living in shared memory, and the reference it will have.

        Fill it, and it is stored with no copy. None when Arrow cannot hold ``dtype``.
        """
        dtype = np.dtype(dtype)
        header = arrow.tensor_header(shape, dtype)
        if header is None:
            return None
        count = int(np.prod(shape))
        size = len(header) + count * dtype.itemsize
        mapping = self._allocate(name, size)
        np.frombuffer(mapping.buffer, np.uint8, len(header))[:] = np.frombuffer(header, np.uint8)
        array = np.frombuffer(mapping.buffer, dtype, count, offset=len(header)).reshape(shape)
        return array, ObjectRef(name, "tensor", size, dtype.str, tuple(shape))

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
        return self._map(target, writable=True)

    def _map(self, path: Path, writable: bool) -> _Mapping:
        if self._maps is not None:
            return _Mapping.over(self._maps.map(path))
        return _Mapping(path, writable)

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
        mapping = self._map(self.objects / ref.name, writable=False)
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
        if self._maps is not None:
            self._maps.clear()
        if self.owner:
            shutil.rmtree(self.path, ignore_errors=True)
            atexit.unregister(self.close)

    def __enter__(self) -> Arena:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Mapping:
    """A file mapped into memory, exposed as an Arrow buffer; closes when unused."""

    owned = True

    @classmethod
    def over(cls, mm: mmap.mmap) -> _Mapping:
        """Wrap a mapping someone else owns (a cached one): not closed on exit."""
        mapping = cls.__new__(cls)
        mapping.mm, mapping.buffer, mapping.owned = mm, pa.py_buffer(mm), False
        return mapping

    def __init__(self, path: Path, writable: bool):
        fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if writable:
                # A writer fills the whole buffer: fault every page in with one call
                # (about 3x faster than taking the faults one by one while copying).
                flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
                self.mm = mmap.mmap(fd, size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)
            else:
                self.mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        self.buffer = pa.py_buffer(self.mm)

    def __enter__(self) -> pa.Buffer:
        return self.buffer

    def __exit__(self, *exc: object) -> None:
        del self.buffer
        if self.owned:
            _close(self.mm)


class _MapCache:
    """A writer's mappings by inode, kept across tasks (least recently used go first).

    An entry keeps its file descriptor: a link count of zero tells that the file was
    unlinked (then the entry is dropped, releasing its memory), so a recycled inode
    number can never be mistaken for a cached file.
    """

    def __init__(self, max_bytes: int = 1 << 30, max_entries: int = 64):
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.entries: OrderedDict[tuple[int, int], tuple[int, mmap.mmap]] = OrderedDict()

    def map(self, path: Path) -> mmap.mmap:
        """A read-write mapping of ``path``, populated, reused when cached."""
        st = os.stat(path)
        key = (st.st_dev, st.st_ino)
        cached = self.entries.get(key)
        if cached is not None:
            fd, mm = cached
            if os.fstat(fd).st_nlink > 0 and len(mm) == max(st.st_size, 1):
                self.entries.move_to_end(key)
                return mm
            self._drop(key)
        self._drop_unlinked()
        fd = os.open(path, os.O_RDWR)
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        mm = mmap.mmap(fd, st.st_size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self.entries[key] = (fd, mm)
        while len(self.entries) > self.max_entries or sum(len(m) for _, m in self.entries.values()) > self.max_bytes:
            self._drop(next(iter(self.entries)))
        return mm

    def clear(self) -> None:
        """Unmap everything."""
        for key in list(self.entries):
            self._drop(key)

    def _drop_unlinked(self) -> None:
        for key, (fd, _) in list(self.entries.items()):
            if os.fstat(fd).st_nlink == 0:
                self._drop(key)

    def _drop(self, key: tuple[int, int]) -> None:
        fd, mm = self.entries.pop(key)
        os.close(fd)
        _close(mm)


def _close(mm: mmap.mmap) -> None:
    try:
        mm.close()
    except BufferError:
        pass  # a view is still exported; the mapping goes when the view does


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
        if not owner_alive(owner):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` in clock ticks since boot (tells a reused pid apart)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def owner_record() -> dict[str, Any]:
    """The calling process as an owner: pid and start time (session folders, container labels)."""
    return {"pid": os.getpid(), "started": process_start_time(os.getpid())}


def owner_alive(owner: dict[str, Any]) -> bool:
    """Whether the process an :func:`owner_record` names still runs (a reused pid does not)."""
    try:
        pid = int(owner["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    if process_start_time(pid) != owner.get("started"):
        return False
    try:
        os.kill(pid, 0)  # where /proc is unreadable both start times are None: ask the pid
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
