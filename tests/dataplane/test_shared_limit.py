"""Two engines at once on one small tmpfs keep to the limit they share."""

import os
import threading

from oremda_lab import Engine
from oremda_lab.dataplane.arena import ROOT_LOCK
from oremda_lab.registry import Registry
from oremda_lab.testing import FAULT_OPERATORS, fault_pipeline, stray_objects

SIZE = 1_000_000  # float64 ones: 8 MB per node
BRANCHES = 4  # per engine: 2 x 4 x 8 MB = 64 MB, past the 80% of 64 MiB they may fill


def pipeline(engine: str):
    p = fault_pipeline({"size": SIZE, "tag": f"{engine}-0"})
    for i in range(1, BRANCHES):
        p.add_node("oremda/fault", id=f"b{i}", params={"size": SIZE, "tag": f"{engine}-{i}"})
    return p


def filled(folder) -> int:
    st = os.statvfs(folder)
    return (st.f_blocks - st.f_bavail) * st.f_frsize


def test_two_engines_at_once_keep_to_the_shared_limit(small_shm, tmp_path):
    limit = 0.8 * (64 << 20)
    engines = [Engine("local", tmp_path, registry=Registry([FAULT_OPERATORS])) for _ in range(2)]
    try:
        runs = {}
        start = threading.Barrier(2)

        def run(i: int) -> None:
            start.wait()
            runs[i] = engines[i].run(pipeline(f"e{i}"))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done = [n for r in runs.values() for n, node in r.nodes.items() if node.status == "done"]
        failed = [node.error["message"] for r in runs.values() for node in r.nodes.values() if node.status == "error"]
        assert len(done) + len(failed) == 2 * BRANCHES
        assert failed, "8 x 8 MB fitted in the 51 MiB the two sessions share"
        assert all("that all sessions may fill together" in m for m in failed), failed
        assert filled(small_shm) <= limit  # every 8 MB output the engines kept, together
        assert len(done) * SIZE * 8 <= limit
        for engine in engines:
            assert not stray_objects(engine)
            assert engine.run(fault_pipeline({"tag": "small"})).ok  # the next run works
    finally:
        for engine in engines:
            engine.close()
    assert os.listdir(small_shm) == []  # no session, and the last one took the lock's name along
    assert not os.path.exists(small_shm / ROOT_LOCK)


def test_stray_objects_sees_a_leak(tmp_path):
    """The leak check the fault tests rely on can fail: an object no cache entry holds is named."""
    with Engine("inline", tmp_path, registry=Registry([FAULT_OPERATORS])) as engine:
        assert engine.run(fault_pipeline({}, {})).ok
        assert stray_objects(engine) == set()  # two outputs, both held by the cache
        engine.arena.put(b"lost", "t9--out")  # as a failed task's output that nobody discarded
        assert stray_objects(engine) == {"t9--out"}
