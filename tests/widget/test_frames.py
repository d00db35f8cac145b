"""Display frames as files the Jupyter server serves (oremda_lab.widget.frames and .server)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from widget_helpers import BLUR_DISPLAY, front_end_says, wait_for

from oremda_lab import Engine, PipelineEditor
from oremda_lab.widget import frames


@pytest.fixture(autouse=True)
def private_frames(tmp_path, monkeypatch):
    monkeypatch.setenv("OREMDA_FRAMES_DIR", str(tmp_path))
    return tmp_path / f"oremda-lab-frames-{os.getuid()}"


def test_a_store_is_off_until_its_probe_comes_back(private_frames):
    store = frames.FrameStore()
    name, token = store.probe()
    assert frames.frame_path(name).read_text() == token
    assert oct(private_frames.stat().st_mode & 0o777) == "0o700"
    assert not store.confirm("someone-else-probe.bin") and not store.enabled
    assert store.confirm(name) and store.enabled
    assert frames.frame_path(name) is None  # the probe is gone once confirmed
    store.close()


def test_each_display_keeps_its_last_frames_and_close_removes_them(private_frames):
    store = frames.FrameStore()
    names = [store.put("view", bytes([i]) * 16) for i in range(frames.KEEP + 2)]
    other = store.put("other", b"x")
    on_disk = sorted(p.name for p in private_frames.iterdir())
    assert on_disk == sorted([*names[-frames.KEEP :], other])
    assert store.read(names[-1]) == bytes([frames.KEEP + 1]) * 16 and store.read(names[0]) is None
    assert oct(frames.frame_path(other).stat().st_mode & 0o777) == "0o600"
    store.close()
    assert list(private_frames.iterdir()) == []


def test_only_frame_names_are_files_of_the_folder(private_frames):
    frames.frames_dir()
    (private_frames.parent / "secret.bin").write_bytes(b"no")
    for name in ("../secret.bin", "secret", ".bin", "a/b.bin", "x" * 81 + ".bin"):
        assert frames.frame_path(name) is None


def test_a_folder_others_can_read_is_refused(private_frames):
    frames.frames_dir().chmod(0o755)
    with pytest.raises(PermissionError, match="not a private folder"):
        frames.frames_dir()


def test_the_editor_sends_pictures_as_frames_after_the_handshake(comm):
    with Engine("inline") as engine:
        e = PipelineEditor(BLUR_DISPLAY, engine, comm=comm)
        wait_for(lambda: e.run["state"] == "done")
        assert "pixels" in e.displays["view"]["layers"][0]  # no handshake yet: bytes in the message
        reply = front_end_says(e, {"type": "frames", "id": 1})
        assert reply["ok"] and frames.frame_path(reply["probe"]).read_text() == reply["token"]
        assert front_end_says(e, {"type": "frames", "id": 2, "confirm": reply["probe"]})["ok"]
        rev = e.displays["view"]["revision"]
        e.pipeline.set_param("blur", "sigma", 6.0)
        wait_for(lambda: e.displays["view"]["revision"] > rev and e.run["state"] == "done")
        (layer,) = e.displays["view"]["layers"]
        assert "pixels" not in layer
        on_disk = np.frombuffer(frames.frame_path(layer["frame"]).read_bytes(), np.uint8)
        assert on_disk.size == layer["width"] * layer["height"] and (on_disk.min(), on_disk.max()) == (0, 255)
        # Nothing big on the wire: the display message names the file.
        _, buffers = e.comm.updates("displays")[-1]
        assert not any(len(b) > 1000 for b in buffers)
        # The page could not fetch a frame: the same picture comes back inside the message.
        front_end_says(e, {"type": "frames-failed", "id": 3})
        assert e.displays["view"]["layers"][0]["pixels"] == on_disk.tobytes()
        name = layer["frame"]
        e.close()
        assert frames.frame_path(name) is None


def test_an_editor_with_frames_off_says_so(comm):
    e = PipelineEditor(BLUR_DISPLAY, auto_run=False, frames=False, comm=comm)
    reply = front_end_says(e, {"type": "frames", "id": 1})
    assert not reply["ok"] and "frames=False" in reply["problems"][0] and "probe" not in reply
    e.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """A real Jupyter server with the extension (enabled by the package's config), token 'secret'."""
    port = _free_port()
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "server", "--no-browser", "--allow-root", "--ip", "127.0.0.1",
         "--port", str(port), "--IdentityProvider.token=secret", f"--ServerApp.root_dir={tmp_path}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token=secret", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > end:
                    raise RuntimeError((tmp_path / "server.log").read_text()) from None
                time.sleep(0.3)
        yield url, tmp_path / "server.log"
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=15)
        log.close()


def _get(url: str, token: str | None = "secret") -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def test_the_server_serves_frames_to_the_logged_in_user_only(server, private_frames):
    url, log = server
    store = frames.FrameStore()
    name = store.put("view", bytes(range(256)) * 4)
    assert _get(f"{url}/oremda-lab/frames/{name}") == (200, bytes(range(256)) * 4)
    assert _get(f"{url}/oremda-lab/frames/{name}", token=None)[0] in (401, 403)
    (private_frames.parent / "secret.bin").write_bytes(b"no")
    for bad in ("..%2Fsecret.bin", "nothing-here.bin", "secret"):
        assert _get(f"{url}/oremda-lab/frames/{bad}")[0] == 404
    store.close()
    assert _get(f"{url}/oremda-lab/frames/{name}")[0] == 404
    assert "kernel websocket without Nagle delays" in log.read_text()
