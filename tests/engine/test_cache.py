import numpy as np

from oremda_lab.dataplane.arena import Arena
from oremda_lab.engine.cache import Cache, Entry, node_key


def test_keys_are_canonical_and_sensitive():
    base = node_key("sha256:a", {"sigma": 1, "mode": "x"}, {"image": "k/out"})
    assert base == node_key("sha256:a", {"mode": "x", "sigma": 1}, {"image": "k/out"})
    assert base != node_key("sha256:a", {"sigma": 2, "mode": "x"}, {"image": "k/out"})
    assert base != node_key("sha256:b", {"sigma": 1, "mode": "x"}, {"image": "k/out"})
    assert base != node_key("sha256:a", {"sigma": 1, "mode": "x"}, {"image": "other/out"})


def test_retain_frees_what_no_run_needs(tmp_path):
    with Arena.create(root=tmp_path) as arena:
        cache = Cache(arena, spare_bytes=0)
        for key in "abc":
            ref = arena.put(np.ones(100), key)
            cache.put(Entry(key, {"out": {"ref": ref.to_dict(), "meta": {}}}, 0.0))
        cache.retain({"b"})
        assert list(cache.entries) == ["b"] and arena.live() == ["b"]


def test_a_shared_buffer_is_freed_with_its_last_holder(tmp_path):
    with Arena.create(root=tmp_path) as arena:
        cache = Cache(arena, spare_bytes=0)
        ref = arena.put(np.ones(100), "shared").to_dict()
        cache.put(Entry("producer", {"out": {"ref": ref, "meta": {}}}, 0.0))
        cache.put(Entry("passthrough", {"out": {"ref": ref, "meta": {}}}, 0.0))
        cache.retain({"passthrough"})
        assert arena.live() == ["shared"]
        cache.retain(set())
        assert arena.live() == []


def test_a_key_computed_twice_keeps_its_first_entry(tmp_path):
    # Two identical nodes computed at once: the first's outputs were handed out already.
    with Arena.create(root=tmp_path) as arena:
        cache = Cache(arena)
        first = arena.put(np.ones(100), "t1--out").to_dict()
        second = arena.put(np.ones(100), "t2--out").to_dict()
        kept = cache.put(Entry("k", {"out": {"ref": first, "meta": {}}}, 0.0))
        assert cache.put(Entry("k", {"out": {"ref": second, "meta": {}}}, 0.0)) is kept
        assert arena.live() == ["t1--out"] and cache.get("k") is kept


def test_a_run_that_made_a_large_object_gets_a_buffer_of_its_size_ready(tmp_path):
    import os
    import time

    from oremda_lab.engine import cache as cache_module

    with Arena.create(root=tmp_path) as arena:
        cache = Cache(arena)
        large = arena.put(np.ones(cache_module.PREFILL_BYTES // 8 + 1), "large")
        small = arena.put(np.ones(100), "small")
        huge = arena.put(np.ones(cache_module.PREFILL_BYTES // 8 + 2), "huge")
        cache_module.PREFILL_MAX_BYTES, saved = large.nbytes, cache_module.PREFILL_MAX_BYTES  # "huge" is over it
        try:
            for key, ref in (("a", large), ("b", small), ("c", huge)):
                cache.put(Entry(key, {"out": {"ref": ref.to_dict(), "meta": {}}}, 0.0))
        finally:
            cache_module.PREFILL_MAX_BYTES = saved
        cache.retain({"a", "b", "c"})
        end = time.monotonic() + 10
        while not os.listdir(arena.pool) and time.monotonic() < end:
            time.sleep(0.01)  # made in the background
        assert [int(n.split("-")[0]) for n in os.listdir(arena.pool)] == [large.nbytes]  # none for small or huge
        assert arena.live() == ["huge", "large", "small"]  # the entries keep their own buffers
