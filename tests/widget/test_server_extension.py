"""The Jupyter server extension: the kernel websocket without Nagle delays (oremda_lab.widget.server)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from types import SimpleNamespace

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection

from oremda_lab.widget import server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_real_server_loads_the_extension_from_the_installed_config(tmp_path):
    port = _free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "server", "--no-browser", "--allow-root", "--ip", "127.0.0.1",
             "--port", str(port), "--IdentityProvider.token=", f"--ServerApp.root_dir={tmp_path}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            end = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2)
                    break
                except OSError:
                    assert proc.poll() is None and time.monotonic() < end, log_path.read_text()
                    time.sleep(0.3)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
    assert "oremda-lab: kernel websocket without Nagle delays" in log_path.read_text()


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
