"""The Jupyter server extension: the kernel websocket without Nagle delays (oremda_lab.widget.server)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from lab import jupyter_lab, server_log

from oremda_lab.widget import server


def test_a_real_server_loads_the_extension_from_the_installed_config(tmp_path):
    with jupyter_lab(tmp_path, app="server"):
        pass
    assert "oremda-lab: kernel websocket without Nagle delays" in server_log("server").read_text()


def _app(connection_class):
    return SimpleNamespace(
        web_app=SimpleNamespace(
            settings={"kernel_websocket_connection_class": connection_class}, add_handlers=lambda host, handlers: None
        ),
        log=logging.getLogger("test"),
    )


def test_the_default_connection_class_becomes_the_no_delay_one():
    app = _app(ZMQChannelsWebsocketConnection)
    server._load_jupyter_server_extension(app)
    assert app.web_app.settings["kernel_websocket_connection_class"] is server.NoDelayConnection


def test_a_server_configured_with_its_own_class_keeps_it():
    class Custom(ZMQChannelsWebsocketConnection):
        pass

    app = _app(Custom)
    server._load_jupyter_server_extension(app)
    assert app.web_app.settings["kernel_websocket_connection_class"] is Custom
