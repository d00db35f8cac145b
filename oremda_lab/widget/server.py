"""The Jupyter server extension: kernel messages to the browser without Nagle delays.

Enabled by the ``jupyter_server_config.d/oremda_lab.json`` file the package installs;
JupyterLab and Notebook 7 both load it.

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

from typing import Any

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection

__all__ = ["NoDelayConnection"]


class NoDelayConnection(ZMQChannelsWebsocketConnection):
    """jupyter_server's kernel websocket connection with TCP_NODELAY set on the socket."""

    def connect(self):  # noqa: D102 - see ZMQChannelsWebsocketConnection.connect
        try:
            self.websocket_handler.set_nodelay(True)
        except Exception:  # noqa: BLE001 - a socket option must never break the connection
            self.log.debug("could not set TCP_NODELAY on the kernel websocket", exc_info=True)
        return super().connect()


def _load_jupyter_server_extension(serverapp: Any) -> None:
    settings = serverapp.web_app.settings
    if settings.get("kernel_websocket_connection_class") in (None, ZMQChannelsWebsocketConnection):
        settings["kernel_websocket_connection_class"] = NoDelayConnection
        serverapp.log.info("oremda-lab: kernel websocket without Nagle delays (TCP_NODELAY)")
    else:
        serverapp.log.info("oremda-lab: the server has its own kernel websocket class; TCP_NODELAY not set")
