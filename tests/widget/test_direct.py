"""The direct path for editor requests (oremda_lab.widget.direct), without a browser.

A real socket and a real event loop in a thread stand in for the kernel's main loop; the
relay tests start a real Jupyter server with the extension and speak websocket to it.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import threading
import urllib.parse
from contextlib import contextmanager

import pytest
from lab import jupyter_lab
from tornado.httpclient import HTTPClientError
from tornado.websocket import websocket_connect
from widget_helpers import BLUR_DISPLAY, RecordingComm, command, wait_for

from oremda_lab import PipelineEditor
from oremda_lab.widget import direct
from oremda_lab.widget.server import is_direct_socket


@pytest.fixture
def kernel_loop():
    """An event loop running in its own thread, as a kernel's main loop runs."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def on_loop(loop, fn):
    """Run ``fn`` on the loop (as a notebook cell runs on the kernel's loop); return its result."""

    async def call():
        return fn()

    return asyncio.run_coroutine_threadsafe(call(), loop).result(10)


@pytest.fixture
def editor(kernel_loop):
    e = on_loop(kernel_loop, lambda: PipelineEditor(BLUR_DISPLAY, auto_run=False, comm=RecordingComm()))
    yield e
    on_loop(kernel_loop, e.close)


@contextmanager
def client(info):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(info["socket"])
    try:
        yield sock
    finally:
        sock.close()


def hello(sock, key):
    direct.write_frame(sock, {"hello": key})
    return direct.read_frame(sock)


def set_sigma(request_id, value):
    change = {"op": "set_param", "id": "blur", "name": "sigma", "value": value}
    return {"type": "command", "id": request_id, "command": change}


def test_an_editor_in_a_cell_offers_the_direct_path(editor):
    info = editor.direct
    assert set(info) == {"socket", "key"} and editor.direct_requests
    assert is_direct_socket(info["socket"])
    folder = os.path.dirname(info["socket"])
    assert os.stat(folder).st_mode & 0o777 == 0o700  # nobody else reaches the socket


def test_requests_over_the_direct_path_are_answered_on_the_kernel_loop(editor, kernel_loop):
    threads = []
    editor.pipeline.observe(lambda _p: threads.append(threading.current_thread()))
    with client(editor.direct) as sock:
        assert hello(sock, editor.direct["key"]) == {"type": "hello", "ok": True}
        direct.write_frame(sock, set_sigma(7, 3.5))
        reply = direct.read_frame(sock)
        assert reply == {"type": "reply", "id": 7, "ok": True, "problems": []}
        assert editor.pipeline.nodes["blur"].params["sigma"] == 3.5
        # Refused the same way as over the comm: the reply says why.
        direct.write_frame(sock, {"type": "command", "id": 8, "command": {"op": "remove_node", "id": "nope"}})
        refused = direct.read_frame(sock)
        assert refused["id"] == 8 and not refused["ok"] and "nope" in refused["problems"][0]
    # The effect still reaches the front end as the graph trait, on the comm.
    graph, _ = editor.comm.updates("graph")[-1]
    assert next(n for n in graph["nodes"] if n["id"] == "blur")["params"]["sigma"] == 3.5
    assert threads and all(t is not threading.main_thread() for t in threads)
    assert {t.name for t in threads} == {on_loop(kernel_loop, lambda: threading.current_thread().name)}


def test_the_comm_and_the_direct_path_answer_alike(editor):
    over_comm = command(editor, {"op": "set_param", "id": "blur", "name": "sigma", "value": -1})
    with client(editor.direct) as sock:
        hello(sock, editor.direct["key"])
        direct.write_frame(sock, set_sigma(over_comm["id"], -1))
        assert direct.read_frame(sock) == over_comm
    assert not over_comm["ok"]


def test_an_unknown_key_is_refused_and_closed(editor):
    with client(editor.direct) as sock:
        assert hello(sock, "not-the-key") == {"type": "hello", "ok": False}
        assert direct.read_frame(sock) is None  # closed by the kernel


def test_a_frame_over_the_limit_closes_only_its_connection(editor):
    with client(editor.direct) as bad, client(editor.direct) as good:
        hello(bad, editor.direct["key"])
        hello(good, editor.direct["key"])
        bad.sendall((direct.MAX_FRAME + 1).to_bytes(4, "big"))
        assert direct.read_frame(bad) is None
        direct.write_frame(good, set_sigma(1, 2.5))
        assert direct.read_frame(good)["ok"]


def test_turning_the_path_off_closes_its_connections_and_clears_the_trait(editor, kernel_loop):
    info = editor.direct
    with client(info) as sock:
        hello(sock, info["key"])
        on_loop(kernel_loop, lambda: setattr(editor, "direct_requests", False))
        assert direct.read_frame(sock) is None  # the front end falls back to the comm
    assert editor.direct == {} and not editor.direct_requests
    with client(info) as sock:  # the old key is gone
        assert hello(sock, info["key"])["ok"] is False
    on_loop(kernel_loop, lambda: setattr(editor, "direct_requests", True))
    assert editor.direct["key"] != info["key"] and editor.direct["socket"] == info["socket"]


def test_a_closed_editor_stops_serving_its_key(kernel_loop):
    e = on_loop(kernel_loop, lambda: PipelineEditor(BLUR_DISPLAY, auto_run=False, comm=RecordingComm()))
    info = e.direct
    on_loop(kernel_loop, e.close)
    with client(info) as sock:
        assert hello(sock, info["key"])["ok"] is False


def test_outside_a_kernel_loop_the_editor_uses_the_comm_only():
    e = PipelineEditor(BLUR_DISPLAY, auto_run=False, comm=RecordingComm())
    assert e.direct == {} and not e.direct_requests
    e.direct_requests = True  # still no loop: nothing to serve on
    assert e.direct == {}
    e.close()


def test_a_closed_server_removes_its_socket_and_folder(kernel_loop):
    server = direct.DirectServer(kernel_loop)
    key = server.register(lambda request: {"type": "reply", "id": request["id"], "ok": True, "problems": []})
    with client(server.info(key)) as sock:
        assert hello(sock, key)["ok"]
        server.close()
        assert direct.read_frame(sock) is None
    assert not os.path.exists(os.path.dirname(server.path))


def test_only_a_kernels_direct_socket_is_accepted_by_the_relay(editor, tmp_path):
    assert is_direct_socket(editor.direct["socket"])
    regular = tmp_path / f"{direct.DIR_PREFIX}x" / "socket"
    regular.parent.mkdir()
    regular.write_text("")
    other = tmp_path / "elsewhere" / "socket"
    other.parent.mkdir()
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(other))
        assert not is_direct_socket(str(other))  # a socket, but not in a kernel's folder
    link = tmp_path / f"{direct.DIR_PREFIX}y"
    link.symlink_to(os.path.dirname(editor.direct["socket"]))
    for path in (str(regular), str(link / "socket"), "relative/socket", "/nonexistent/socket"):
        assert not is_direct_socket(path), path


# -- the relay in a real Jupyter server ---------------------------------------------------


@pytest.fixture(scope="module")
def relay_server(tmp_path_factory):
    """A Jupyter server with the installed extension, a base URL and token ``t0ken``: its URL.

    PATH leaves out this Python's scripts, as when it runs as ``.venv/bin/python`` with the
    environment not activated: the server must still be this Python's, extension included.
    """
    scripts = os.path.dirname(sys.executable)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != scripts)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PATH", path)
        with jupyter_lab(tmp_path_factory.mktemp("server"), app="server", base_url="/user/x/", token="t0ken") as url:
            yield url


def relay(url, socket_path, token="t0ken"):
    query = urllib.parse.urlencode({"socket": socket_path, **({"token": token} if token else {})})
    return websocket_connect(f"{url.replace('http://', 'ws://', 1)}/oremda-lab/direct?{query}")


def test_the_server_relays_requests_and_replies(relay_server, editor):
    async def talk():
        ws = await relay(relay_server, editor.direct["socket"])
        ws.write_message(json.dumps({"hello": editor.direct["key"]}))
        assert json.loads(await ws.read_message()) == {"type": "hello", "ok": True}
        for i, sigma in enumerate((1.25, 4.0, 0.5)):
            await ws.write_message(json.dumps(set_sigma(i, sigma)))
            assert json.loads(await ws.read_message()) == {"type": "reply", "id": i, "ok": True, "problems": []}
        ws.close()

    asyncio.run(talk())
    assert editor.pipeline.nodes["blur"].params["sigma"] == 0.5


def test_the_relay_closes_when_the_kernel_side_closes(relay_server, editor, kernel_loop):
    async def talk():
        ws = await relay(relay_server, editor.direct["socket"])
        ws.write_message(json.dumps({"hello": editor.direct["key"]}))
        await ws.read_message()
        on_loop(kernel_loop, lambda: setattr(editor, "direct_requests", False))
        assert await asyncio.wait_for(ws.read_message(), 10) is None  # closed: the page falls back
        ws.close()

    asyncio.run(talk())


@pytest.mark.parametrize(
    ("case", "status"),
    [("no token", 403), ("not a direct socket", 404), ("a socket nobody listens on", 404)],
)
def test_the_relay_refuses(relay_server, editor, tmp_path, case, status):
    path, token = editor.direct["socket"], "t0ken"
    if case == "no token":
        token = None
    elif case == "not a direct socket":
        path = str(tmp_path / "socket")
    else:
        folder = tmp_path / f"{direct.DIR_PREFIX}dead"
        folder.mkdir()
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(folder / "socket"))  # bound, never listening
        path = str(folder / "socket")

    async def talk():
        with pytest.raises(HTTPClientError) as e:
            await relay(relay_server, path, token)
        return e.value.code

    assert asyncio.run(talk()) == status
    wait_for(lambda: editor.direct_requests)
