import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from oremda_lab.dataplane.arena import (
    ROOT_LOCK,
    Arena,
    SharedMemoryFull,
    owner_record,
    shm_limits,
    signal_group,
    sweep_stale,
)


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


@pytest.mark.parametrize("side", ["owner", "writer"])
def test_a_read_view_cannot_be_made_writable(arena, side):
    ref = arena.put(np.arange(8.0), "x")
    reader = arena if side == "owner" else Arena.attach(arena.path)
    view = reader.get(ref)
    with pytest.raises(ValueError, match="WRITEABLE"):
        view.flags.writeable = True
    np.testing.assert_array_equal(arena.get(ref), np.arange(8.0))


def test_a_writer_stores_outputs_larger_than_its_mapping_cache(arena):
    # The writer keeps at most 1 GiB of mappings; a bigger output once evicted (and
    # closed) its own fresh mapping before use: "mmap closed or invalid".
    writer = Arena.attach(arena.path)
    n = int(1.1 * (1 << 30))
    ref = writer.put(np.full(n, 7, np.uint8), "big")
    made, made_ref = writer.allocate_array("alloc", (n,), np.uint8)
    made[-1] = 9
    assert ref.nbytes > n and made_ref.nbytes > n
    assert arena.get(ref)[-1] == 7 and arena.get(made_ref)[-1] == 9


def test_the_budget_is_kept_and_a_refused_buffer_leaves_nothing(tmp_path):
    with Arena.create(root=tmp_path, budget_bytes=1 << 20) as a:
        writer = Arena.attach(a.path)
        assert writer.budget_bytes == 1 << 20
        with pytest.raises(SharedMemoryFull, match=r"shared memory full \(needed 2\.0 MiB, free 1\.0 MiB"):
            writer.put(np.zeros(1 << 21, np.uint8), "t1--out")
        with pytest.raises(SharedMemoryFull):
            writer.allocate_array("t1--alloc0", (1 << 21,), np.uint8)
        assert a.live() == [] and os.listdir(a.pool) == []
        writer.put(np.zeros(512, np.uint8), "t2--out")
        assert a.live() == ["t2--out"]


def test_pooled_buffers_make_room_within_the_budget(tmp_path):
    with Arena.create(root=tmp_path, budget_bytes=3 << 20) as a:
        a.free(a.put(np.zeros(1 << 20, np.uint8), "small"))
        a.free(a.put(np.zeros(3 << 19, np.uint8), "medium"))
        assert len(os.listdir(a.pool)) == 2
        # Neither pooled file fits 2.5 MiB and the budget counts them: they give way.
        a.put(np.zeros(5 << 19, np.uint8), "large")
        assert a.live() == ["large"] and os.listdir(a.pool) == []


@pytest.mark.parametrize("budget", [None, 1 << 40], ids=["default budget", "budget past the tmpfs"])
def test_full_shared_memory_is_an_error_not_a_crash(small_shm, budget):
    # Without reserved pages, writing past a full tmpfs raises SIGBUS in the writer.
    with Arena.create(budget_bytes=budget) as a:
        assert a.path.parent == small_shm
        writer = Arena.attach(a.path)
        with pytest.raises(SharedMemoryFull, match=r"shared memory full \(needed 80\.0 MiB, free"):
            writer.put(np.zeros(80 << 20, np.uint8), "t1--out")
        assert a.live() == [] and os.listdir(a.pool) == []
        np.testing.assert_array_equal(a.get(writer.put(np.ones(64), "t2--out")), np.ones(64))


def test_the_limits_come_from_the_environment(small_shm, tmp_path, monkeypatch):
    size = 64 << 20  # the fresh tmpfs
    assert shm_limits() == (None, pytest.approx(size * 0.8, rel=0.01))
    monkeypatch.setenv("OREMDA_SHM_BUDGET", "0.25")
    assert shm_limits() == (None, pytest.approx(size / 4, rel=0.01))
    monkeypatch.setenv("OREMDA_SHM_BUDGET", "1000000")  # bytes: this session's own budget
    assert shm_limits() == (1_000_000, pytest.approx(size * 0.8, rel=0.01))
    assert shm_limits(tmp_path)[1] is None  # a disk folder: the disk is the limit
    monkeypatch.setenv("OREMDA_SHM_BUDGET", "nan")
    with pytest.raises(ValueError, match="OREMDA_SHM_BUDGET"):
        shm_limits()


def test_sessions_on_one_tmpfs_share_one_limit(small_shm):
    """Two sessions (two engines) may together fill 80% of the tmpfs, not 80% each."""
    with Arena.create() as first, Arena.create() as second:
        assert os.path.samefile(first.path / "shm.lock", small_shm / ROOT_LOCK)
        assert os.path.samefile(second.path / "shm.lock", small_shm / ROOT_LOCK)
        first.put(np.zeros(30 << 20, np.uint8), "t1--out")
        writer = Arena.attach(second.path)  # as a worker (a container's sees only the session folder)
        with pytest.raises(SharedMemoryFull, match=r"needed 30\.0 MiB, free .* that all sessions may fill together"):
            writer.put(np.zeros(30 << 20, np.uint8), "t1--out")
        assert second.live() == []
        writer.put(np.zeros(15 << 20, np.uint8), "t2--out")
        st = os.statvfs(small_shm)
        assert (st.f_blocks - st.f_bavail) * st.f_frsize <= 0.8 * (64 << 20)


def test_signal_group_spares_a_pid_that_another_process_took():
    """pids wrap (32768 here): a group kill recorded for one process must not reach its successor."""
    leader = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        record = owner_record(leader.pid)
        signal_group({**record, "started": record["started"] - 1}, signal.SIGKILL)  # as if the pid was reused
        assert leader.poll() is None
        signal_group(record, signal.SIGKILL)
        assert leader.wait(10) == -signal.SIGKILL
    finally:
        leader.kill()
        leader.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_another_users_session_shares_the_lock(small_shm):
    """fs.protected_hardlinks lets a user link only files it may write: the root lock is 0666."""
    with Arena.create():
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # as user nobody (no exec: its interpreter may sit in a folder nobody cannot read)
            try:
                os.setgid(65534)
                os.setuid(65534)
                with Arena.create() as theirs:
                    shared = os.path.samefile(theirs.path / "shm.lock", small_shm / ROOT_LOCK)
                    os.write(write, f"{shared} {os.stat(theirs.path).st_uid}".encode())
            finally:
                os._exit(0)
        os.close(write)
        answer = os.read(read, 100).decode()
        os.close(read)
        os.waitpid(pid, 0)
    assert answer == "True 65534"


def _take_pooled_buffers(path: str, seconds: float) -> None:
    """A writer in another process: allocate and drop buffers as fast as it can (it takes pooled files)."""
    import time

    writer = Arena.attach(path)
    end, i = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        i += 1
        made = writer.allocate_array(f"w{i}", (512,), np.float64)
        if made is not None:
            (writer.objects / made[1].name).unlink(missing_ok=True)


def test_freeing_while_another_process_takes_pooled_buffers(tmp_path):
    # The pool's trim lists the pool, then reads each file's time: a writer that takes a
    # file in between (a rename) must not make free() fail (it did, in partitioned runs).
    import multiprocessing

    with Arena.create(root=tmp_path, pool_bytes=8 * 4096) as a:
        taker = multiprocessing.get_context("spawn").Process(target=_take_pooled_buffers, args=(str(a.path), 4.0))
        taker.start()
        try:
            for i in range(20_000):
                a.free(a.put(np.ones(512), f"x{i}"))
                if not taker.is_alive():
                    break
        finally:
            taker.join(timeout=30)
        assert taker.exitcode == 0


def test_a_buffer_made_ahead_is_the_next_writers_of_its_size(tmp_path):
    with Arena.create(root=tmp_path) as a:
        size = arrow_size = a.put(np.zeros((1024, 1024), np.float32), "probe").nbytes
        a.discard("probe")
        for name in os.listdir(a.pool):
            os.unlink(a.pool / name)
        assert a.prefill(arrow_size)
        (pooled,) = os.listdir(a.pool)
        st = os.stat(a.pool / pooled)
        assert st.st_size == size and st.st_blocks * 512 >= size  # every page is there already
        assert not a.prefill(arrow_size)  # one that fits is there: nothing more
        writer = Arena.attach(a.path)
        array, ref = writer.allocate_array("t1--out", (1024, 1024), np.float32)
        assert os.stat(a.objects / ref.name).st_ino == st.st_ino and os.listdir(a.pool) == []
        assert [n for n in os.listdir(a.path) if n.startswith(".prefill")] == []


def test_a_buffer_over_the_budget_is_not_made(tmp_path):
    with Arena.create(root=tmp_path, budget_bytes=1 << 20) as a:
        assert not a.prefill(2 << 20)
        assert os.listdir(a.pool) == [] and [n for n in os.listdir(a.path) if n.startswith(".prefill")] == []
