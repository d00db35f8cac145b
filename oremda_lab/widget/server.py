"""The Jupyter server extension: kernel messages without Nagle delays, and the direct path.

Enabled by the ``jupyter_server_config.d/oremda_lab.json`` file the package installs;
JupyterLab and Notebook 7 both load it.

:class:`DirectRelayHandler` (``<base_url>oremda-lab/direct?socket=...``) relays an
editor's requests between the page and its kernel's socket (see
:mod:`oremda_lab.widget.direct`). Only a logged-in user allowed to execute code in
kernels may open it, and it connects only to a kernel's direct socket: a Unix socket in
a directory named ``oremda-lab-direct-*`` that this server's user owns.

:class:`NoDelayConnection` sets TCP_NODELAY on the kernel websocket. Tornado leaves
Nagle's algorithm on unless asked and jupyter_server does not ask: every small message to
the browser (a slider's echo, a status change) then waits for the browser's delayed ACK,
about 40 ms per round trip here (a widget message round trip: 52 ms by default, 11 ms
with TCP_NODELAY). The extension makes it the connection class when the server uses
jupyter_server's default one; a server configured with another class keeps it (add the
socket option there, or set this one)::

    jupyter lab --ServerApp.kernel_websocket_connection_class=oremda_lab.widget.server.NoDelayConnection
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from typing import Any

from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from jupyter_server.utils import ensure_async, url_path_join
from tornado import web
from tornado.iostream import IOStream, StreamClosedError
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from oremda_lab.widget.direct import DIR_PREFIX, MAX_FRAME

__all__ = ["DirectRelayHandler", "NoDelayConnection"]


class NoDelayConnection(ZMQChannelsWebsocketConnection):
    """jupyter_server's kernel websocket connection with TCP_NODELAY set on the socket."""

    def connect(self):  # noqa: D102 - see ZMQChannelsWebsocketConnection.connect
        try:
            self.websocket_handler.set_nodelay(True)
        except Exception:  # noqa: BLE001 - a socket option must never break the connection
            self.log.debug("could not set TCP_NODELAY on the kernel websocket", exc_info=True)
        return super().connect()


class DirectRelayHandler(WebSocketMixin, WebSocketHandler, JupyterHandler):
    """Relays one editor's direct requests: websocket text messages <-> the kernel socket's frames."""

    auth_resource = "kernels"
    stream: IOStream | None = None

    def set_default_headers(self) -> None:
        """No JupyterHandler headers on a websocket (as jupyter_server's kernel websocket)."""

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Check the user and the socket, connect to it, then upgrade to a websocket."""
        if not await ensure_async(self.authorizer.is_authorized(self, self.current_user, "execute", "kernels")):
            raise web.HTTPError(403)
        path = self.get_argument("socket")
        if not is_direct_socket(path):
            raise web.HTTPError(404, "not a kernel's direct socket")
        stream = IOStream(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), max_buffer_size=2 * MAX_FRAME)
        try:
            await stream.connect(path)
        except (OSError, StreamClosedError) as e:
            stream.close()
            raise web.HTTPError(404, "the kernel's direct socket does not answer") from e
        self.stream = stream
        await super().get(*args, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> None:  # noqa: D102 - see WebSocketHandler.open
        super().open(*args, **kwargs)
        self.set_nodelay(True)
        self._reading = asyncio.ensure_future(self._kernel_to_page())  # a reference keeps the task alive

    async def _kernel_to_page(self) -> None:
        try:
            while True:
                size = int.from_bytes(await self.stream.read_bytes(4), "big")
                if size > MAX_FRAME:
                    break
                await self.write_message((await self.stream.read_bytes(size)).decode())
        except (StreamClosedError, WebSocketClosedError):
            pass
        self.close()

    async def on_message(self, message: str | bytes) -> None:  # noqa: D102 - page -> kernel
        data = message.encode() if isinstance(message, str) else message
        try:
            await self.stream.write(len(data).to_bytes(4, "big") + data)
        except StreamClosedError:
            self.close()

    def on_close(self) -> None:  # noqa: D102
        if self.stream is not None:
            self.stream.close()


def is_direct_socket(path: str) -> bool:
    """True for a kernel's direct socket: a Unix socket in an ``oremda-lab-direct-*`` directory of this user."""
    folder = os.path.dirname(path)
    if not os.path.isabs(path) or not os.path.basename(folder).startswith(DIR_PREFIX):
        return False
    try:
        folder_stat, sock_stat = os.lstat(folder), os.lstat(path)
    except OSError:
        return False
    return (
        stat.S_ISDIR(folder_stat.st_mode) and stat.S_ISSOCK(sock_stat.st_mode)
        and folder_stat.st_uid == os.getuid() == sock_stat.st_uid
    )  # fmt: skip


def _load_jupyter_server_extension(serverapp: Any) -> None:
    web_app = serverapp.web_app
    settings = web_app.settings
    route = url_path_join(settings.get("base_url", "/"), "oremda-lab/direct")
    web_app.add_handlers(".*$", [(route, DirectRelayHandler)])
    if settings.get("kernel_websocket_connection_class") in (None, ZMQChannelsWebsocketConnection):
        settings["kernel_websocket_connection_class"] = NoDelayConnection
        serverapp.log.info("oremda-lab: kernel websocket without Nagle delays (TCP_NODELAY)")
    else:
        serverapp.log.info("oremda-lab: the server has its own kernel websocket class; TCP_NODELAY not set")
