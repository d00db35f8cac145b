"""The direct path: editor requests that reach the kernel without its shell channel.

Why: a request over the widget's comm is a shell message, and the kernel brackets every
shell message with ``busy`` and ``idle`` statuses. The page handles both (JupyterLab
redraws its kernel indicators and its toolbar re-measures its items), so each slider
step made the browser's main thread do ~15 ms of work that competes with drawing the
step's picture (median 52.9 against 38.1 ms with the statuses skipped, in one page).

How: the kernel listens on a Unix socket in a private directory (mode 0700); the Jupyter
server extension (:mod:`oremda_lab.widget.server`) relays a websocket from the page to
it. Requests are handled on the kernel's main thread, between its other messages, as a
comm message would be; replies go back the same way. Results still travel on the comm
(traits). Where the path cannot work (no server extension, a kernel on another host, VS
Code), the front end keeps using the comm: the same requests, the same replies.

Wire format, both directions: a 4-byte big-endian length, then that many bytes of UTF-8
JSON. The first frame from a client is ``{"hello": key}``: the key (a secret per editor)
names the editor whose requests follow; the server answers ``{"type": "hello", "ok": ...}``.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import secrets
import shutil
import socket
import struct
import tempfile
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["DIR_PREFIX", "DirectServer", "read_frame", "server_for", "write_frame"]

log = logging.getLogger(__name__)
#: The private directory of a kernel's socket starts with this (the relay accepts nothing else).
DIR_PREFIX = "oremda-lab-direct-"
#: A frame larger than this is refused (requests are small JSON documents).
MAX_FRAME = 64 * 1024 * 1024
_HEADER = struct.Struct(">I")

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def write_frame(sock: socket.socket, message: dict[str, Any]) -> None:
    """Send one JSON message as a length-prefixed frame."""
    data = json.dumps(message).encode()
    sock.sendall(_HEADER.pack(len(data)) + data)


def read_frame(sock: socket.socket) -> dict[str, Any] | None:
    """Receive one frame; None when the peer closed the connection."""
    header = _recv_exactly(sock, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ValueError(f"a frame of {size} bytes is over the {MAX_FRAME} byte limit")
    data = _recv_exactly(sock, size)
    if data is None:
        return None
    return json.loads(data)


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class DirectServer:
    """One kernel's socket: accepts the relay's connections and hands requests to the editors.

    ``loop`` is the kernel's main event loop: handlers run there, one at a time, between
    the kernel's own messages (not while a cell's code or a comm message is running).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._dir = tempfile.mkdtemp(prefix=DIR_PREFIX)  # 0700: only this user reaches the socket
        self.path = os.path.join(self._dir, "socket")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._listener.bind(self.path)
            self._listener.listen()
        except OSError:
            self._listener.close()
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        self._connections: dict[socket.socket, str | None] = {}  # -> the key it serves
        threading.Thread(target=self._accept, name="oremda-direct", daemon=True).start()

    def register(self, handler: Handler) -> str:
        """Serve ``handler`` (request -> reply) under a new secret key, returned."""
        key = secrets.token_urlsafe(24)
        with self._lock:
            self._handlers[key] = handler
        return key

    def unregister(self, key: str) -> None:
        """Stop serving ``key``; its open connections close (the front end falls back to the comm)."""
        with self._lock:
            self._handlers.pop(key, None)
            connections = [c for c, k in self._connections.items() if k == key]
        _shut(connections)

    def info(self, key: str) -> dict[str, str]:
        """What the front end needs to connect: the socket's path and the editor's key."""
        return {"socket": self.path, "key": key}

    def close(self) -> None:
        """Stop listening, close every connection and remove the socket's directory."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._handlers.clear()
            connections = list(self._connections)
        _shut([self._listener, *connections])
        shutil.rmtree(self._dir, ignore_errors=True)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                self._connections[conn] = None
            threading.Thread(target=self._serve, args=(conn,), name="oremda-direct-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        send_lock = threading.Lock()
        try:
            hello = read_frame(conn)
            key = hello.get("hello") if isinstance(hello, dict) else None
            with self._lock:
                known = isinstance(key, str) and key in self._handlers
                if known:
                    self._connections[conn] = key
            with send_lock:
                write_frame(conn, {"type": "hello", "ok": known})
            if not known:
                return
            while (request := read_frame(conn)) is not None:
                self._loop.call_soon_threadsafe(self._answer, conn, send_lock, key, request)
        except (OSError, ValueError, RuntimeError) as e:  # a broken peer, a bad frame, a closed loop
            log.debug("direct connection ended: %s", e)
        finally:
            with self._lock:
                self._connections.pop(conn, None)
            conn.close()

    def _answer(self, conn: socket.socket, send_lock: threading.Lock, key: str, request: Any) -> None:
        # On the kernel's main thread.
        with self._lock:
            handler = self._handlers.get(key)
        if handler is None:  # the editor closed meanwhile (unregister closed the connection)
            return
        reply = handler(request)
        try:
            with send_lock:
                write_frame(conn, reply)
        except OSError as e:
            log.debug("direct reply not delivered: %s", e)


def _shut(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv or accept
        except OSError:
            pass
        sock.close()


_server: DirectServer | None = None
_server_lock = threading.Lock()


def server_for(loop: asyncio.AbstractEventLoop) -> DirectServer | None:
    """The process's one server on ``loop`` (made on first use); None where none can listen."""
    global _server
    with _server_lock:
        if _server is None or _server._loop is not loop or _server._closed:
            if _server is not None:
                _server.close()
            try:
                _server = DirectServer(loop)
            except (OSError, AttributeError) as e:  # no AF_UNIX here, a path too long for a socket, ...
                log.info("no direct path for editor requests: %s", e)
                _server = None
                return None
            atexit.register(_server.close)
        return _server
