"""Core benchmarks: data plane, warm workers, incremental re-runs, parallel start.

Run: ``python bench/bench_core.py`` (about two minutes on 2 cores). Every figure is
measured side by side with its baseline in the same run and printed as a ratio.
"""

from __future__ import annotations

import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

from oremda_lab import Engine, Pipeline
from oremda_lab.dataplane.arena import Arena
from oremda_lab.registry import Registry
from oremda_lab.runtime import Task, make_runtime
from oremda_lab.testing import write_operator
from oremda_lab.worker.sdk import PortValue

PASSTHROUGH = textwrap.dedent(
    """
    from oremda_lab.worker.sdk import operator

    @operator
    def passthrough(inputs, params):
        return {"out": inputs["in"].data}
    """
)
COPY = textwrap.dedent(
    """
    from oremda_lab.worker.sdk import operator

    @operator
    def copy(inputs, params):
        return {"out": inputs["in"].data.copy()}
    """
)
PRODUCER = textwrap.dedent(
    """
    import numpy as np
    from oremda_lab.worker.sdk import operator

    @operator(stateful=True)
    def producer(inputs, params, state):
        if "array" not in state:
            state["array"] = np.random.default_rng(0).random(params["n"], dtype=np.float32)
        return {"out": state["array"]}
    """
)
CONSUMER = textwrap.dedent(
    """
    import numpy as np
    from oremda_lab.worker.sdk import PortValue, operator

    def mapped_file(address):
        # Which file backs this address in our own memory map (proof the view maps shared memory).
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                low, high = (int(x, 16) for x in fields[0].split("-"))
                if low <= address < high:
                    return fields[5] if len(fields) > 5 else ""
        return ""

    @operator
    def consumer(inputs, params):
        data = inputs["in"].data
        backing = mapped_file(data.__array_interface__["data"][0])
        meta = {"owndata": bool(data.flags.owndata), "mapped": "/objects/" in backing, "first": float(data.flat[0])}
        return {"out": PortValue(np.zeros(1), meta)}
    """
)


def describe(name: str, params: dict | None = None, stateful: bool = False) -> dict:
    return {
        "name": name,
        "entrypoint": "run",
        "ports": {"input": {"in": {"type": "data", "required": False}}, "output": {"out": {"type": "data"}}},
        "params": params or {"tag": {"type": "string", "default": ""}},
        "stateful": stateful,
    }


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:8.3f} ms"


def row(label: str, value: str, ratio: str = "", goal: str = "") -> None:
    print(f"  {label:<52} {value:>14}  {ratio:>12}  {goal}")


# -- 1. per-hop overhead, 1 MB -------------------------------------------------------------


def _echo(conn) -> None:
    while True:
        item = conn.recv()
        if item is None:
            return
        conn.send(item)


def bench_hop(folder: Path, repeats: int = 400) -> None:
    print("\n1. Per-hop overhead, 1 MB float64 array (median of", repeats, "hops)")
    array = np.random.default_rng(1).random(1 << 17)  # 1 MiB
    registry = Registry([folder], builtin=False)
    hops = {}
    with Arena.create() as arena:
        runtime = make_runtime("local", arena)
        try:
            ref = arena.put(array, "input--in")
            wire = {"in": {"ref": ref.to_dict(), "meta": {}}}
            for name in ("passthrough", "copy"):
                spec = registry.get(name)
                runtime.start([spec])
                times = []
                for i in range(repeats):
                    task = Task(f"{name}{i}", "hop", spec, {"tag": ""}, wire)
                    started = time.perf_counter()
                    result = runtime.submit(task).result()
                    times.append(time.perf_counter() - started)
                    out = result.outputs["out"]["ref"]["name"]
                    if out != ref.name:  # steady state: new buffers come back to the pool
                        arena.free(out)
                hops[name] = statistics.median(times)
        finally:
            runtime.stop()
    hop = hops["passthrough"]

    namespace: dict = {}
    exec(PASSTHROUGH.replace("from oremda_lab.worker.sdk import operator", ""), {"operator": lambda f: f}, namespace)
    func = namespace["passthrough"]
    bare = []
    for _ in range(repeats):
        started = time.perf_counter()
        func({"in": PortValue(array)}, {"tag": ""})
        bare.append(time.perf_counter() - started)

    parent, child = multiprocessing.Pipe()
    echo = multiprocessing.get_context("fork").Process(target=_echo, args=(child,))
    echo.start()
    pickled = []
    for _ in range(repeats):
        started = time.perf_counter()
        parent.send(array)
        parent.recv()
        pickled.append(time.perf_counter() - started)
    parent.send(None)
    echo.join()
    pipe = statistics.median(pickled)
    row("warm worker hop, input passed on (zero copy)", ms(hop), "", "goal <= 0.3 ms")
    row("warm worker hop, operator returns a new 1 MB copy", ms(hops["copy"]))
    row("bare in-process call", ms(statistics.median(bare)), f"{hop / statistics.median(bare):8.0f}x")
    row("multiprocessing pipe round trip, pickle", ms(pipe), f"{pipe / hop:8.1f}x faster", "goal >= 5x")


# -- 2. 256 MB between two operators ----------------------------------------------------------


def bench_bandwidth(folder: Path, data_dir: Path, repeats: int = 8) -> None:
    n = 64 << 20  # 64 Mi float32 = 256 MiB
    print(f"\n2. 256 MiB float32 between two operators, steady state (median of {repeats} runs)")
    pipeline = Pipeline.from_json(
        {
            "nodes": [
                {"id": "producer", "image": "producer", "params": {"n": n, "tag": "0"}},
                {"id": "consumer", "image": "consumer"},
            ],
            "edges": [
                {"type": "data", "from": {"id": "producer", "port": "out"}, "to": {"id": "consumer", "port": "in"}}
            ],
        },
        catalog=Registry([folder], builtin=False),
    )
    produce, consume = [], []
    with Engine("local", data_dir, registry=Registry([folder], builtin=False), cache_bytes=0) as engine:
        for i in range(repeats + 2):
            pipeline.set_param("producer", "tag", str(i))
            run = engine.run(pipeline)
            run.raise_for_errors()
            meta = run.outputs["consumer"]["out"].meta
            if i >= 2:  # the first runs allocate fresh pages
                produce.append(run.nodes["producer"].duration_s)
                consume.append(run.nodes["consumer"].duration_s)
            del run
    source = np.random.default_rng(0).random(n, dtype=np.float32)
    target = np.empty_like(source)
    np.copyto(target, source)
    copies = []
    for _ in range(repeats):
        started = time.perf_counter()
        np.copyto(target, source)
        copies.append(time.perf_counter() - started)
    gib = source.nbytes / 2**30
    hop, copy = statistics.median(produce), statistics.median(copies)
    row(
        "producer hop (writes 256 MiB into shared memory)",
        f"{gib / hop:8.2f} GiB/s",
        f"{copy / hop:8.2f}x",
        "goal >= 0.5x",
    )
    row("np.copyto of the same array", f"{gib / copy:8.2f} GiB/s")
    row("consumer hop (reads 256 MiB)", ms(statistics.median(consume)))
    row("consumer saw its own copy? (owndata)", str(meta["owndata"]), "", "expect False")
    row("consumer's view maps the shared file?", str(meta["mapped"]), "", "expect True")


# -- 3. incremental re-run of a 5-node pipeline -------------------------------------------------


def bench_incremental(data_dir: Path, repeats: int = 5, warmup: int = 20) -> None:
    print(f"\n3. 5-node pipeline on a 4096x4096 float32 image (median of {repeats}; slider after {warmup} moves)")
    image = np.random.default_rng(2).random((4096, 4096), dtype=np.float32)
    tifffile.imwrite(data_dir / "big.tif", image)
    # read -> blur -> diffractogram -> crop (the slider: a 2048 px window moving) -> blur
    pipeline = Pipeline.from_json(
        {
            "nodes": [
                {"id": "read", "image": "oremda/tiff_reader", "params": {"filename": "big.tif"}},
                {"id": "blur1", "image": "oremda/gaussian_blur", "params": {"sigma": 2.0}},
                {"id": "fft", "image": "oremda/diffractogram"},
                {"id": "crop", "image": "oremda/crop2d", "params": {"bounds": [1024, 3072, 1024, 3072]}},
                {"id": "blur2", "image": "oremda/gaussian_blur", "params": {"sigma": 1.5}},
            ],
            "edges": [
                {"type": "data", "from": {"id": a, "port": p}, "to": {"id": b, "port": q}}
                for a, p, b, q in [
                    ("read", "out", "blur1", "image"),
                    ("blur1", "image", "fft", "image"),
                    ("fft", "diffractogram", "crop", "image"),
                    ("crop", "image", "blur2", "image"),
                ]
            ],
        }
    )
    full, partial, plain = [], [], []
    with Engine("local", data_dir) as engine:
        engine.run(pipeline).raise_for_errors()  # start workers
        for _ in range(repeats):  # full re-runs: every node computes (warm workers, empty cache)
            engine.cache.clear()
            started = time.perf_counter()
            engine.run(pipeline).raise_for_errors()
            full.append(time.perf_counter() - started)
        # The slider moves the crop window. The first moves fill the cache's spare budget
        # with fresh buffers; after that, evicted buffers come back through the pool.
        for move in range(warmup + repeats):
            x0 = y0 = 1024 + 16 * (move + 1)
            pipeline.set_param("crop", "bounds", [x0, x0 + 2048, y0, y0 + 2048])
            started = time.perf_counter()
            run = engine.run(pipeline)
            elapsed = time.perf_counter() - started
            assert [n for n, r in run.nodes.items() if r.status == "done"] == ["crop", "blur2"]
            spectrum = np.array(run.outputs["fft"]["diffractogram"].data)
            del run
            started = time.perf_counter()
            ndimage.gaussian_filter(spectrum[y0 : y0 + 2048, x0 : x0 + 2048], 1.5)
            if move >= warmup:
                partial.append(elapsed)
                plain.append(time.perf_counter() - started)
    f, p, n = (statistics.median(x) for x in (full, partial, plain))
    row("re-run after moving the crop (crop + blur2)", ms(p))
    row("full re-run (all 5 nodes, warm workers)", ms(f), f"{f / p:8.1f}x", "goal >= 5x faster")
    row("plain numpy/scipy of the dirty nodes", ms(n), f"{p / n:8.2f}x", "goal <= 1.2x")


# -- 4. parallel start -----------------------------------------------------------------------

START = """
import sys, time
from oremda_lab.dataplane.arena import Arena
from oremda_lab.registry import default_registry
from oremda_lab.runtime import make_runtime
if __name__ == "__main__":
    n = int(sys.argv[1])
    specs = [default_registry().get(name) for name in ("gaussian_blur", "crop2d", "fft2d", "tiff_reader")]
    with Arena.create() as arena:
        runtime = make_runtime("local", arena)
        started = time.perf_counter()
        failures = runtime.start({f"slot{i}": specs[i % len(specs)] for i in range(n)})
        cold = time.perf_counter() - started
        started = time.perf_counter()
        runtime.start({f"again{i}": specs[i % len(specs)] for i in range(n)})
        warm = time.perf_counter() - started
        runtime.stop()
    assert not failures, failures
    print(cold, warm)
"""


def bench_start(repeats: int = 3) -> None:
    print(f"\n4. Starting N workers vs one, fresh process each time (median of {repeats})")
    script = Path(tempfile.mkdtemp()) / "start.py"
    script.write_text(START)
    results = {}
    for n in (1, 4, 8):
        samples = [
            tuple(map(float, subprocess.check_output([sys.executable, str(script), str(n)], text=True).split()))
            for _ in range(repeats)
        ]
        results[n] = (statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples))
    one = results[1][0]
    for n, (cold, _) in results.items():
        ratio = f"{cold / one:8.2f}x" if n > 1 else ""
        row(f"start {n} worker(s), cold (fork server boots)", ms(cold), ratio, "goal <= 1.5x" if n > 1 else "")
    for n, (_, warm) in results.items():
        row(f"start {n} more worker(s), fork server warm", ms(warm))


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    write_operator(folder, describe("passthrough"), PASSTHROUGH)
    write_operator(folder, describe("copy"), COPY)
    write_operator(
        folder,
        describe("producer", {"n": {"type": "integer", "default": 1}, "tag": {"type": "string", "default": ""}}, True),
        PRODUCER,
    )
    write_operator(folder, describe("consumer"), CONSUMER)
    data_dir = Path(tempfile.mkdtemp())
    print(f"oremda-lab core benchmarks ({multiprocessing.cpu_count()} cores)")
    print(f"  {'measure':<52} {'value':>14}  {'ratio':>12}  goal")
    bench_hop(folder)
    bench_bandwidth(folder, data_dir)
    bench_incremental(data_dir)
    bench_start()


if __name__ == "__main__":
    main()
