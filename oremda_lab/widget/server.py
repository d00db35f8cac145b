"""The Jupyter server extension: display frames over HTTP, and kernel messages without delay.

Enabled by the ``jupyter_server_config.d/oremda_lab.json`` file the package installs (or
``jupyter server extension enable oremda_lab``); JupyterLab and Notebook 7 both load it.

* ``GET <base>/oremda-lab/frames/<name>`` serves a display frame the kernel wrote
  (:mod:`oremda_lab.widget.frames`) to the logged-in user: pictures skip the kernel
  websocket, which is slow for large messages.
* :class:`NoDelayConnection` sets TCP_NODELAY on the kernel websocket. Tornado leaves
  Nagle's algorithm on unless asked and jupyter_server does not ask: every small message
  to the browser (a slider's echo, a status change) then waits for the browser's delayed
  ACK, about 40 ms per round trip here (a widget message round trip: 52 ms by default,
  11 ms with TCP_NODELAY). The extension makes it the connection class when the server
  uses jupyter_server's default one; otherwise set it yourself::

    jupyter lab --ServerApp.kernel_websocket_connection_class=oremda_lab.widget.server.NoDelayConnection
"""

from __future__ import annotations

from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from jupyter_server.utils import url_path_join
from tornado import web

from oremda_lab.widget import frames

__all__ = ["FrameHandler", "NoDelayConnection"]

#: Where frames are served, under the server's base URL (the front end builds the same path).
FRAMES_ROUTE = "oremda-lab/frames"


class NoDelayConnection(ZMQChannelsWebsocketConnection):
    """jupyter_server's kernel websocket connection with TCP_NODELAY set on the socket."""

    def connect(self):  # noqa: D102 - see ZMQChannelsWebsocketConnection.connect
        try:
            self.websocket_handler.set_nodelay(True)
        except Exception:  # noqa: BLE001 - a socket option must never break the connection
            self.log.debug("could not set TCP_NODELAY on the kernel websocket", exc_info=True)
        return super().connect()


class FrameHandler(APIHandler):
    """One display frame's bytes, to the logged-in user only (403, no login redirect); else 404."""

    @web.authenticated
    def get(self, name: str) -> None:  # noqa: D102
        path = frames.frame_path(name)
        try:
            data = path.read_bytes() if path is not None else None
        except FileNotFoundError:  # dropped meanwhile (a newer frame is on its way)
            data = None
        if data is None:
            raise web.HTTPError(404)
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Cache-Control", "no-store")
        self.finish(data)


def _load_jupyter_server_extension(serverapp: Any) -> None:
    web_app = serverapp.web_app
    route = url_path_join(web_app.settings["base_url"], FRAMES_ROUTE, "([^/]+)")
    web_app.add_handlers(".*$", [(route, FrameHandler)])
    settings = web_app.settings
    if settings.get("kernel_websocket_connection_class") in (None, ZMQChannelsWebsocketConnection):
        settings["kernel_websocket_connection_class"] = NoDelayConnection
    serverapp.log.info("oremda-lab: display frames at %s, kernel websocket without Nagle delays", route)
