"""Shared-memory sessions: where port values live and who frees them.

State and policy
----------------
A session is one folder under the shared-memory root (``/dev/shm`` unless
``OREMDA_SHM_DIR`` says otherwise)::

    oremda-<pid>-<token>/
      owner.json   pid and start time of the owning (engine) process, limits
      shm.lock     the shared-memory filesystem's allocation lock (a hard link)
      objects/     live values, one file each, named ``<task>--<port>``
      pool/        freed files kept for reuse, named ``<size>-<uuid>``

* Writers (workers, in any process or container that maps the folder) allocate a
  file for each output: a pooled file of fitting size when there is one (taken by an
  atomic rename, so writers need no lock), else a new one. Reused files have their
  pages already, which makes filling them ~10x faster than fresh ones.
* A new file's pages are reserved up front (``posix_fallocate``), so a full tmpfs is
  a :class:`SharedMemoryFull` error at allocation, never a SIGBUS while writing.
* Limits (``owner.json``; :func:`shm_limits`): all sessions on one shared-memory
  filesystem together fill it to at most a share of its size (80% unless
  ``OREMDA_SHM_BUDGET`` gives another fraction), and a session may have a byte budget
  of its own. A writer that would pass either first drops its session's pooled files,
  then fails the same way. New files are made under one lock per filesystem
  (``shm.lock`` in every session, a hard link to ``.oremda-shm.lock`` in the root, so
  writers in containers that see only their session take the same lock): the check
  and the reservation are one step, and concurrent writers of any session or engine
  cannot overshoot. A file that failed to fill is unlinked.
* Readers map read-only (``PROT_READ``) and get arrays over a read-only buffer, so an
  operator cannot make its input writable and change a cached value.
* The owner alone frees. A freed file goes back to the pool, unless a numpy view
  handed out in the owner's process still maps it; then it is unlinked instead, so a
  view never sees its bytes change. The pool is trimmed to ``pool_bytes``.
* Writers keep their mappings across tasks (:class:`_MapCache`, by inode), so a pooled
  buffer that comes back is written and read without new page faults or mmap calls.
* A new file costs its writer the kernel's zeroing and mapping of every page, on the
  run's path (about 50 ms for 64 MiB here). :meth:`Arena.prefill` makes a pooled buffer
  of a given size ahead of time, pages in place, so the next writer of that size only
  maps it (the engine's cache asks for one per large output a run made).
* The folder is removed by :meth:`Arena.close`, at interpreter exit, and, if the owner
  died without either, by :func:`sweep_stale` at the next start-up.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import json
import math
import mmap
import os
import shutil
import signal
import socket
import tempfile
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from oremda_lab.dataplane import arrow
from oremda_lab.dataplane.refs import ObjectRef

PREFIX = "oremda-"
DEFAULT_POOL_BYTES = 2 << 30
BUDGET_ENV = "OREMDA_SHM_BUDGET"
# Without OREMDA_SHM_BUDGET, sessions together may fill this share of a shared-memory filesystem.
DEFAULT_BUDGET_FRACTION = 0.8
ROOT_LOCK = ".oremda-shm.lock"
SESSION_LOCK = "shm.lock"
# Filesystems whose space is memory: the shared limit applies there (not on a disk folder).
MEMORY_FILESYSTEMS = ("tmpfs", "ramfs", "hugetlbfs")
# A pooled file may be at most this much larger than the request (else it wastes memory).
_POOL_SLACK = 2.0


def shm_root() -> Path:
    """The shared-memory root: ``OREMDA_SHM_DIR``, else ``/dev/shm``, else the temp dir."""
    root = os.environ.get("OREMDA_SHM_DIR")
    if root:
        return Path(root)
    return Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())


class SharedMemoryFull(MemoryError):
    """Shared memory (the session's budget or the tmpfs) cannot hold a new buffer."""

    def __init__(self, needed: int, free: int, where: str):
        self.needed, self.free = needed, free
        super().__init__(f"shared memory full (needed {human_size(needed)}, free {human_size(free)} {where})")


def shm_limits(root: Path | None = None) -> tuple[int | None, int | None]:
    """The limits of a new session under ``root``: (its own budget, the shared limit), bytes or None.

    ``OREMDA_SHM_BUDGET`` is either a byte count (the session's own budget) or a fraction
    (at most 1) of the filesystem's size that all sessions on it may fill together
    (default 0.8). The shared limit holds on memory filesystems (tmpfs) only: a disk
    folder as ``OREMDA_SHM_DIR`` has just the disk's limit.
    """
    root = Path(root) if root else shm_root()
    raw = os.environ.get(BUDGET_ENV, "").strip()
    fraction, budget = DEFAULT_BUDGET_FRACTION, None
    if raw:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{BUDGET_ENV}={raw!r} is neither a byte count nor a fraction") from None
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{BUDGET_ENV}={raw!r} must be a positive number")
        if value <= 1:
            fraction = value
        else:
            budget = int(value)
    if not _memory_filesystem(root):
        return budget, None
    st = os.statvfs(root)
    return budget, int(st.f_blocks * st.f_frsize * fraction)


def _memory_filesystem(path: Path) -> bool:
    """Whether ``path`` lies on a memory filesystem (tmpfs), by the longest matching mount."""
    path = os.path.realpath(path)
    best, kind = "", ""
    try:
        with open("/proc/self/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                inside = path == point or path.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, kind = point, fields[2]
    except OSError:  # no /proc (macOS): /dev/shm is absent there, the temp dir is a disk
        return False
    return kind in MEMORY_FILESYSTEMS


def _link_lock(root: Path, session: Path) -> None:
    """Put the root's allocation lock into ``session`` (a hard link: one lock for every session).

    Linking holds the lock, and the last session to close removes the root's name
    under it (:func:`_unlink_lock`), so a new session never links a name about to go.
    Where linking is refused, the session gets a lock of its own (its limits then hold
    for it alone).
    """
    lock = root / ROOT_LOCK
    while True:
        try:
            fd = os.open(lock, os.O_RDONLY)  # no O_CREAT: another user's file in /dev/shm refuses it
        except FileNotFoundError:
            try:
                fd = os.open(lock, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue
            os.fchmod(fd, 0o666)  # past the umask: other users may link it (fs.protected_hardlinks)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink == 0:
                continue  # the last session closed meanwhile and removed it: make a new one
            try:
                os.link(lock, session / SESSION_LOCK)
            except OSError:
                os.close(os.open(session / SESSION_LOCK, os.O_RDONLY | os.O_CREAT, 0o444))
            return
        finally:
            os.close(fd)


def _unlink_lock(session: Path) -> None:
    """Drop ``session``'s link to the root's lock; the last session removes the root's name too."""
    try:
        fd = os.open(session / SESSION_LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.unlink(session / SESSION_LOCK)
        root_lock, held = session.parent / ROOT_LOCK, os.fstat(fd)
        with contextlib.suppress(FileNotFoundError):
            named = os.stat(root_lock)
            if held.st_nlink == 1 and (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino):
                os.unlink(root_lock)
    finally:
        os.close(fd)


class Arena:
    """A session's shared memory, seen from the owner (engine) or a writer (worker)."""

    def __init__(
        self,
        path: Path,
        owner: bool,
        pool_bytes: int = DEFAULT_POOL_BYTES,
        budget_bytes: int | None = None,
        limit_bytes: int | None = None,
    ):
        self.path = Path(path)
        self.owner = owner
        self.pool_bytes = pool_bytes
        self.budget_bytes = budget_bytes
        self.limit_bytes = limit_bytes
        self.objects = self.path / "objects"
        self.pool = self.path / "pool"
        self._views: dict[str, list[weakref.ref]] = {}
        self._maps = None if owner else _MapCache()
        self._closed = False

    @classmethod
    def create(
        cls, root: Path | None = None, pool_bytes: int = DEFAULT_POOL_BYTES, budget_bytes: int | None = None
    ) -> Arena:
        """Start a new session owned by this process (stale sessions are swept first).

        ``budget_bytes`` caps the shared memory the session's objects and pool may
        take (default: a byte count in ``OREMDA_SHM_BUDGET``, else none); the limit
        shared by all sessions on the filesystem applies besides (:func:`shm_limits`).
        """
        root = Path(root) if root else shm_root()
        sweep_stale(root)
        default_budget, limit_bytes = shm_limits(root)
        if budget_bytes is None:
            budget_bytes = default_budget
        path = root / f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        for sub in (path, path / "objects", path / "pool", path / "run"):
            sub.mkdir(mode=0o777)
            os.chmod(sub, 0o777)  # containers write here under another uid
        _link_lock(root, path)
        limits = {"budget_bytes": budget_bytes, "limit_bytes": limit_bytes}
        (path / "owner.json").write_text(json.dumps({**owner_record(), "host": socket.gethostname(), **limits}))
        arena = cls(path, owner=True, pool_bytes=pool_bytes, **limits)
        atexit.register(arena.close)
        return arena

    @classmethod
    def attach(cls, path: str | Path) -> Arena:
        """Join an existing session as a writer."""
        path = Path(path)
        if not (path / "objects").is_dir():
            raise FileNotFoundError(f"no oremda session at {path}")
        try:
            owner = json.loads((path / "owner.json").read_text())
            limits = {key: owner.get(key) for key in ("budget_bytes", "limit_bytes")}
        except (OSError, ValueError, AttributeError):
            limits = {}  # an older session: the tmpfs is the only limit
        return cls(path, owner=False, **limits)

    # -- writing ---------------------------------------------------------------

    def put(self, data: Any, name: str) -> ObjectRef:
        """Store an ndarray (or bytes) under ``name``; returns its reference."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            payload = memoryview(data).cast("B")
            with self._filling(name), self._allocate(name, payload.nbytes) as buffer:
                np.frombuffer(buffer, np.uint8, payload.nbytes)[:] = np.frombuffer(payload, np.uint8)
            return ObjectRef(name, "bytes", payload.nbytes)
        array = np.asarray(data)
        if array.dtype.hasobject:
            raise TypeError(f"cannot share an array of Python objects (dtype {array.dtype})")
        tensor, fallback = arrow.as_tensor(array)
        size = arrow.tensor_size(tensor)
        with self._filling(name), self._allocate(name, size) as buffer:
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
        with self._filling(name):
            mapping = self._allocate(name, size)
            np.frombuffer(mapping.buffer, np.uint8, len(header))[:] = np.frombuffer(header, np.uint8)
            array = np.frombuffer(mapping.buffer, dtype, count, offset=len(header)).reshape(shape)
        return array, ObjectRef(name, "tensor", size, dtype.str, tuple(shape))

    @contextlib.contextmanager
    def _filling(self, name: str) -> Iterator[None]:
        """Unlink object ``name`` if making it fails: a half-written file is nobody's."""
        try:
            yield
        except BaseException:
            (self.objects / name).unlink(missing_ok=True)
            raise

    def _allocate(self, name: str, size: int) -> _Mapping:
        target = self.objects / name
        for candidate in self._pool_candidates(size):
            try:
                os.rename(candidate, target)
                break
            except FileNotFoundError:
                continue  # another writer took it first
        else:
            os.close(self._new_file(target, max(size, 1)))
        return self._map(target, writable=True)

    def _new_file(self, path: Path, size: int) -> int:
        """Make ``path`` with ``size`` bytes of real pages, within the limits; its open descriptor."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            os.fchmod(fd, 0o666)
            with self._locked():
                self._reserve(fd, size)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the shared-memory filesystem's allocation lock (shared by every session on it)."""
        try:
            fd = os.open(self.path / SESSION_LOCK, os.O_RDONLY)
        except FileNotFoundError:  # an older session without one: its limits hold for it alone
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _reserve(self, fd: int, size: int) -> None:
        """Give a new file ``size`` bytes of real pages, within the limits and the tmpfs (lock held)."""
        if self.budget_bytes is not None:
            used = self._used()
            if used + size > self.budget_bytes:
                used -= self._drop_pool(used + size - self.budget_bytes)
            if used + size > self.budget_bytes:
                raise SharedMemoryFull(size, max(self.budget_bytes - used, 0), "in this session's budget")
        if self.limit_bytes is not None:
            used = self._filled()
            if used + size > self.limit_bytes:
                self._drop_pool(used + size - self.limit_bytes)
                used = self._filled()
            if used + size > self.limit_bytes:
                where = f"of the {human_size(self.limit_bytes)} that all sessions may fill together"
                raise SharedMemoryFull(size, max(self.limit_bytes - used, 0), where)
        if not hasattr(os, "posix_fallocate"):  # macOS: pages come on first touch
            os.ftruncate(fd, size)
            return
        for attempt in (1, 2):
            try:
                os.posix_fallocate(fd, 0, size)
                return
            except OSError as e:
                if e.errno not in (errno.ENOSPC, errno.ENOMEM):
                    raise
                os.ftruncate(fd, 0)  # give back what the failed call reserved
                if attempt == 2 or not self._drop_pool(size):
                    st = os.statvfs(self.path)
                    raise SharedMemoryFull(size, st.f_bavail * st.f_frsize, f"on {self.path.parent}") from None

    def _filled(self) -> int:
        """Bytes in use on the session's filesystem (every session's, and anyone else's)."""
        st = os.statvfs(self.path)
        return (st.f_blocks - st.f_bavail) * st.f_frsize

    def _used(self) -> int:
        """Bytes the session's objects and pool take."""
        total = 0
        for folder in (self.objects, self.pool):
            for entry in os.scandir(folder):
                try:
                    total += entry.stat().st_size
                except FileNotFoundError:
                    continue  # freed or taken meanwhile
        return total

    def _drop_pool(self, wanted: int) -> int:
        """Unlink pooled files, oldest first, until ``wanted`` bytes are gone; returns bytes freed."""
        entries = []
        for entry in os.scandir(self.pool):
            try:
                entries.append((entry.stat().st_mtime, entry.stat().st_size, entry.path))
            except FileNotFoundError:
                continue
        freed = 0
        for _, size, path in sorted(entries):
            if freed >= wanted:
                break
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue  # another writer took it
            freed += size
        return freed

    def _map(self, path: Path, writable: bool) -> _Mapping:
        if self._maps is not None:
            return _Mapping.over(self._maps.map(path, writable))
        return _Mapping(path, writable)

    def prefill(self, size: int) -> bool:
        """Put a buffer of ``size`` bytes, pages allocated and zeroed, in the pool unless one fits already.

        Within the same limits as any new file (over them: nothing is made). Returns
        whether a buffer was made.
        """
        if self._pool_candidates(size):
            return False
        name = f"{size}-{uuid.uuid4().hex}"
        making = self.path / f".prefill-{name}"  # outside objects/ and pool/ until it is whole
        try:
            fd = self._new_file(making, size)
            try:
                # Writable MAP_POPULATE faults every page in: allocated and zeroed now, not by the writer.
                flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
                mmap.mmap(fd, size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE).close()
            finally:
                os.close(fd)
            os.rename(making, self.pool / name)
        except (OSError, SharedMemoryFull):  # full, or the session closed meanwhile: not worth an error
            making.unlink(missing_ok=True)
            return False
        self._trim_pool()
        return True

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
        return arrow.read_array(buffer, ref.dtype, ref.shape)

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
        dated = []
        for entry in os.scandir(self.pool):
            try:
                dated.append((entry.stat().st_mtime, entry))
            except FileNotFoundError:
                continue  # a writer took it between the listing and the stat
        total = 0
        for _, entry in sorted(dated, key=lambda d: d[0], reverse=True):
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
            _unlink_lock(self.path)
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
    """A writer's mappings by inode and mode, kept across tasks (least recently used go first).

    An entry keeps its file descriptor: a link count of zero tells that the file was
    unlinked (then the entry is dropped, releasing its memory), so a recycled inode
    number can never be mistaken for a cached file. Inputs are mapped read-only,
    outputs read-write: one file may have one entry of each.
    """

    def __init__(self, max_bytes: int = 1 << 30, max_entries: int = 64):
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.entries: OrderedDict[tuple[int, int, bool], tuple[int, mmap.mmap]] = OrderedDict()

    def map(self, path: Path, writable: bool) -> mmap.mmap:
        """A mapping of ``path`` (read-only unless ``writable``), populated, reused when cached."""
        st = os.stat(path)
        key = (st.st_dev, st.st_ino, writable)
        cached = self.entries.get(key)
        if cached is not None:
            fd, mm = cached
            if os.fstat(fd).st_nlink > 0 and len(mm) == max(st.st_size, 1):
                self.entries.move_to_end(key)
                return mm
            self._drop(key)
        self._drop_unlinked()
        fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
        try:
            flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
            prot = mmap.PROT_READ | mmap.PROT_WRITE if writable else mmap.PROT_READ
            mm = mmap.mmap(fd, st.st_size, flags=flags, prot=prot)
        except BaseException:
            os.close(fd)
            raise
        self.entries[key] = (fd, mm)
        # Evict older entries only: the one just made is about to be used (a mapping
        # larger than max_bytes on its own was once closed here before its first use).
        while len(self.entries) > 1 and (
            len(self.entries) > self.max_entries or sum(len(m) for _, m in self.entries.values()) > self.max_bytes
        ):
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

    def _drop(self, key: tuple[int, int, bool]) -> None:
        fd, mm = self.entries.pop(key)
        os.close(fd)
        _close(mm)


def human_size(n: float) -> str:
    """A byte count for people.

    Examples
    --------
    >>> human_size(1536), human_size(512)
    ('1.5 KiB', '512 B')
    """
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            break
    return f"{n:.1f} {unit}"


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
            _unlink_lock(path)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` in clock ticks since boot (tells a reused pid apart)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def signal_group(leader: dict[str, Any], sig: int) -> None:
    """Send ``sig`` to the process group that ``leader`` (an :func:`owner_record`) leads.

    A group's id is its leader's pid. The group is the leader's while the leader runs
    with the recorded start time, or while it is gone but members are left (the kernel
    never hands out a pid still in use as a group id). A pid now taken by another
    process is left alone: pids wrap (at 32768 on many machines), and a stale kill would
    hit a stranger's group.
    """
    pid = int(leader["pid"])
    started = process_start_time(pid)
    if started is not None and started != leader.get("started"):
        return
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_marked(variable: str, value: str, passes: int = 20) -> list[int]:
    """SIGKILL every process whose environment holds ``variable=value``; returns their pids.

    A runtime's workers carry its key in their environment and every process they start
    inherits it, wherever it moved (another session, another parent): a last sweep
    when the runtime stops. Linux (``/proc``); only processes this user may inspect.
    """
    marker, killed = f"{variable}={value}".encode(), []
    for _ in range(passes):  # again: one may have forked while the last pass killed
        found = []
        for entry in os.scandir("/proc") if os.path.isdir("/proc") else []:
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                with open(f"{entry.path}/environ", "rb") as f:
                    if marker in f.read().split(b"\0"):
                        found.append(int(entry.name))
            except OSError:
                continue  # gone, or not ours to read
        found = [pid for pid in found if _living(pid)]
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed += found
        time.sleep(0.01)  # SIGKILL is asynchronous
    return sorted(set(killed))


def _living(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def owner_record(pid: int | None = None) -> dict[str, Any]:
    """A process (default: the caller) as an owner: pid and start time (session folders, labels, groups)."""
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "started": process_start_time(pid)}


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
