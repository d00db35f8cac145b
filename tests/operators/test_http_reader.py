"""http_reader against a local HTTP server on loopback (no outside network)."""

import functools
import hashlib
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import tifffile

from oremda_lab.testing import run_operator


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("OREMDA_HTTP_CACHE", str(folder))
    return folder


def test_fetches_bytes_and_caches_them(server, cache):
    root, base = server
    (root / "a.bin").write_bytes(b"first")
    out = run_operator("http_reader", params={"url": f"{base}/a.bin"})["data"]
    assert out.data == b"first"
    assert out.meta["sha256"] == hashlib.sha256(b"first").hexdigest() and not out.meta["cached"]
    (root / "a.bin").write_bytes(b"second")
    again = run_operator("http_reader", params={"url": f"{base}/a.bin"})["data"]
    assert again.data == b"first" and again.meta["cached"]
    fresh = run_operator("http_reader", params={"url": f"{base}/a.bin", "cache": False})["data"]
    assert fresh.data == b"second" and not fresh.meta["cached"]


def test_feeds_tiff_reader(server, cache):
    root, base = server
    image = np.random.default_rng(1).random((32, 40)).astype(np.float32)
    tifffile.imwrite(root / "img.tif", image)
    body = run_operator("http_reader", params={"url": f"{base}/img.tif"})["data"]
    out = run_operator("tiff_reader", {"data": body})["out"]
    np.testing.assert_array_equal(out.data, image)


def test_errors_surface(server, cache):
    _, base = server
    with pytest.raises(RuntimeError, match="404"):
        run_operator("http_reader", params={"url": f"{base}/missing.bin"})
    with pytest.raises(RuntimeError, match="only fetches http"):
        run_operator("http_reader", params={"url": "file:///etc/passwd"})
