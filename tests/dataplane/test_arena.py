import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from oremda_lab.dataplane.arena import Arena, sweep_stale


@pytest.fixture
def arena(tmp_path):
    with Arena.create(root=tmp_path) as a:
        yield a


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.array(3.5),
        np.array([True, False]),
        np.arange(6).astype(np.complex64) * 1j,
        np.zeros((0, 2)),
        np.arange(24, dtype=np.uint16).reshape(2, 3, 4)[:, ::2],  # not contiguous
        np.array(["2020-01-01"], dtype="datetime64[D]"),
    ],
)
def test_arrays_round_trip(arena, array):
    ref = arena.put(array, "x")
    out = arena.get(ref)
    assert out.dtype == array.dtype and out.shape == array.shape
    np.testing.assert_array_equal(out, array)


def test_bytes_round_trip(arena):
    assert arena.get(arena.put(b"\x00tiff bytes", "b")) == b"\x00tiff bytes"


def test_object_arrays_are_refused(arena):
    with pytest.raises(TypeError, match="Python objects"):
        arena.put(np.array([{}, 1], dtype=object), "o")


def test_reads_are_zero_copy_views(arena):
    ref = arena.put(np.zeros(1000, dtype=np.float64), "z")
    view = arena.get(ref)
    assert not view.flags.owndata and not view.flags.writeable
    # Writing the file through another mapping shows through the view: it maps the file.
    raw = np.memmap(arena.objects / ref.name, dtype=np.uint8, mode="r+")
    offset = ref.nbytes - view.nbytes
    raw[offset : offset + 8] = np.frombuffer(np.float64(7.0).tobytes(), np.uint8)
    raw.flush()
    assert view[0] == 7.0


def test_freed_buffers_are_reused(arena):
    ref = arena.put(np.ones(1 << 16), "a")
    arena.free(ref)
    assert arena.live() == [] and len(os.listdir(arena.pool)) == 1
    arena.put(np.ones(1 << 16), "b")
    assert os.listdir(arena.pool) == []  # the pooled file was taken


def test_a_live_view_is_never_recycled(arena):
    ref = arena.put(np.ones(1024), "a")
    view = arena.get(ref)
    arena.free(ref)
    assert os.listdir(arena.pool) == []  # unlinked, not pooled
    arena.put(np.zeros(1024), "b")
    assert view.sum() == 1024


def test_pool_is_trimmed(tmp_path):
    with Arena.create(root=tmp_path, pool_bytes=100_000) as a:
        for i in range(5):
            a.free(a.put(np.ones(10_000 + i * 1000), f"x{i}"))
        assert sum(int(n.split("-")[0]) for n in os.listdir(a.pool)) <= 100_000


def test_discard_removes_a_tasks_objects(arena):
    arena.put(np.ones(3), "t1--out")
    arena.put(np.ones(3), "t2--out")
    arena.discard("t1--")
    assert arena.live() == ["t2--out"]


def test_close_removes_the_session(tmp_path):
    a = Arena.create(root=tmp_path)
    a.put(np.ones(3), "x")
    a.close()
    assert list(tmp_path.iterdir()) == []


def test_sessions_of_dead_owners_are_swept(tmp_path):
    code = (
        "import sys, time, numpy as np; from oremda_lab.dataplane.arena import Arena;"
        f"a = Arena.create(root={str(tmp_path)!r}); a.put(np.ones(10), 'x'); print(a.path, flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    path = proc.stdout.readline().strip()
    assert os.path.isdir(path)
    assert sweep_stale(tmp_path) == []  # owner alive: kept
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert [str(p) for p in sweep_stale(tmp_path)] == [path]
    assert not os.path.exists(path)


def test_reused_pid_does_not_protect_a_stale_session(tmp_path):
    stale = tmp_path / "oremda-1-deadbeef"
    (stale / "objects").mkdir(parents=True)
    (stale / "owner.json").write_text(json.dumps({"pid": os.getpid(), "started": "0", "host": os.uname().nodename}))
    assert sweep_stale(tmp_path) == [stale]
