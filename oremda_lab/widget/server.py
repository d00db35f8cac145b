"""Jupyter server side: a kernel websocket connection that sends small messages at once.

Tornado websockets leave Nagle's algorithm on unless asked (``set_nodelay``), and
jupyter_server does not ask. Every small kernel message to the browser (a slider's echo,
a status change) then waits for the browser's delayed ACK: about 40 ms per round trip
here (measured: a widget message round trip takes 52 ms by default, 11 ms with
TCP_NODELAY). For a live slider that is most of the budget. Enable it with::

    jupyter lab --ServerApp.kernel_websocket_connection_class=oremda_lab.widget.server.NoDelayConnection

or the same setting in ``jupyter_server_config.py`` / a ``jupyter_server_config.d`` JSON
file (``{"ServerApp": {"kernel_websocket_connection_class": "..."}}``). It changes only the
socket option; everything else is jupyter_server's own connection class.
"""

from __future__ import annotations

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
