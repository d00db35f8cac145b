"""Display frames as files the Jupyter server serves: pictures off the kernel's message path.

Why: a picture sent inside a comm message crosses the kernel websocket, where Chromium
reads a message that arrives after a quiet spell 1000 bytes at a time (its read buffer
grows only once the connection has been busy for a while): a 512 x 512 frame (256 KiB)
took 10-60 ms from the server to the page on 2 cores. Over HTTP the same bytes arrive
in a few milliseconds.

State and policy
----------------
* The kernel writes each picture into :func:`frames_dir` (a private folder, mode 0700,
  of the user, in shared memory when there is any) as ``<store>-<n>.bin``, and the
  display payload names the file instead of carrying the bytes. The server extension
  (:mod:`oremda_lab.widget.server`) serves these files at ``<base>/oremda-lab/frames/<name>``
  to the logged-in user, nothing else.
* A :class:`FrameStore` (one per editor) is off until the front end proved that it can
  read what this kernel writes (the kernel and the server share the machine and user):
  :meth:`FrameStore.probe` writes a file with a random token, the front end fetches it
  through the server and :meth:`FrameStore.confirm` switches frames on. Otherwise (no
  extension, a remote kernel, VS Code) pictures keep travelling in the messages.
* Each display keeps its last :data:`KEEP` frames (a page may still be fetching an older
  one); closing the store (the editor, or the kernel's exit) removes its files.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import tempfile
import threading
from pathlib import Path

#: The only file names the server hands out.
NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}\.bin$")
#: Frames kept per display after a newer one.
KEEP = 3


def frames_dir() -> Path:
    """The user's frames folder (made 0700 if missing); refuses one that is not private to the user.

    It is ``oremda-lab-frames-<uid>`` in ``$OREMDA_FRAMES_DIR`` if set (the server and its
    kernels inherit it), else in /dev/shm, else in the temporary folder.
    """
    shm = Path("/dev/shm")
    if os.environ.get("OREMDA_FRAMES_DIR"):
        base = Path(os.environ["OREMDA_FRAMES_DIR"])
    else:
        base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    folder = base / f"oremda-lab-frames-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    st = folder.lstat()
    if not folder.is_dir() or folder.is_symlink() or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise PermissionError(f"{folder} is not a private folder of this user")
    return folder


def frame_path(name: str) -> Path | None:
    """The file of frame ``name``, or None when the name is not a frame's (or it does not exist)."""
    if not NAME.match(name):
        return None
    path = frames_dir() / name
    return path if path.is_file() else None


class FrameStore:
    """One editor's frames on disk; off until :meth:`confirm`."""

    def __init__(self) -> None:
        self.prefix = secrets.token_hex(8)
        self.enabled = False
        self._count = 0
        self._lock = threading.Lock()
        self._kept: dict[str, list[Path]] = {}
        self._probe: tuple[str, str] | None = None
        atexit.register(self.close)

    def probe(self) -> tuple[str, str]:
        """Write a probe frame; returns its (name, token) for the front end to fetch and compare."""
        name, token = f"{self.prefix}-probe.bin", secrets.token_hex(16)
        self._write(frames_dir() / name, token.encode())
        self._probe = (name, token)
        return name, token

    def confirm(self, name: str) -> bool:
        """The front end read the probe ``name`` back through the server: frames on."""
        with self._lock:
            ok = self._probe is not None and self._probe[0] == name
            if ok:
                (frames_dir() / name).unlink(missing_ok=True)
                self._probe = None
                self.enabled = True
            return ok

    def disable(self) -> None:
        """Back to pictures inside messages (the front end could not fetch a frame)."""
        self.enabled = False

    def put(self, display: str, data: bytes) -> str:
        """Store one picture of ``display``; returns the name the front end fetches."""
        with self._lock:
            self._count += 1
            path = frames_dir() / f"{self.prefix}-{self._count}.bin"
            self._write(path, data)
            kept = self._kept.setdefault(display, [])
            kept.append(path)
            while len(kept) > KEEP:
                kept.pop(0).unlink(missing_ok=True)
            return path.name

    def read(self, name: str) -> bytes | None:
        """The bytes of this store's frame ``name``; None once it was dropped."""
        path = frame_path(name) if name.startswith(f"{self.prefix}-") else None
        try:
            return path.read_bytes() if path is not None else None
        except FileNotFoundError:
            return None

    def close(self) -> None:
        """Remove every file of this store."""
        with self._lock:
            self.enabled = False
            for paths in self._kept.values():
                for path in paths:
                    path.unlink(missing_ok=True)
            self._kept = {}
            if self._probe is not None:
                (frames_dir() / self._probe[0]).unlink(missing_ok=True)
                self._probe = None
        atexit.unregister(self.close)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        # Whole or not at all: the server may read the name as soon as the message is out.
        tmp = path.with_suffix(".tmp")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(data)
        os.replace(tmp, path)
