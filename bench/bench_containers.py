"""Container runtimes: cold start of N containers in parallel vs one, and warm per-hop
overhead through a container vs the local runtime (goal: within 1.2x).

    python bench/bench_containers.py [--engines docker,podman] [--n 8] [--hops 300] [--record docs/benchmarks.md]

Needs the engines running (``DOCKER_HOST``, ``OREMDA_PODMAN_HOST``); builds a
``passthrough`` operator image (1 MB float64 in, the same array out, no copy) on the
cached base. Cold start is ``Runtime.start`` of fresh workers until every one has said
HELLO (image lookup, container create + start, Python and numpy/pyarrow import, connect),
best of --reps. A hop is ``submit(task).result()`` on a warm worker: control message
out, the worker maps the input from shared memory and writes its output, reply back.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from oremda_lab.dataplane.arena import Arena
from oremda_lab.images.build import ImageBuilder
from oremda_lab.registry import Registry
from oremda_lab.runtime import RuntimeUnavailable, Task, make_runtime
from oremda_lab.runtime.docker import connect
from oremda_lab.testing import write_operator

PASSTHROUGH = textwrap.dedent(
    """
    from oremda_lab.worker.sdk import operator

    @operator
    def passthrough(inputs, params):
        return {"out": inputs["in"].data}
    """
)
DESCRIPTION = {
    "name": "passthrough",
    "version": "1",
    "entrypoint": "run",
    "ports": {"input": {"in": {"type": "data"}}, "output": {"out": {"type": "data"}}},
    "params": {"tag": {"type": "string", "default": ""}},
}


def cold_start(runtime_name: str, spec, n: int, data_dir: Path, reps: int) -> float:
    """Best wall time for ``n`` fresh workers to be ready (parallel launch)."""
    best = float("inf")
    for _ in range(reps):
        with Arena.create() as arena:
            runtime = make_runtime(runtime_name, arena, data_dir=data_dir, start_timeout=120)
            try:
                started = time.perf_counter()
                failures = runtime.start({f"s{i}": spec for i in range(n)})
                elapsed = time.perf_counter() - started
                assert not failures, failures
            finally:
                runtime.stop()
        best = min(best, elapsed)
    return best


def warm_hop(runtime_name: str, spec, data_dir: Path, hops: int) -> float:
    """Median seconds per hop of a 1 MB array through a warm worker."""
    with Arena.create() as arena:
        runtime = make_runtime(runtime_name, arena, data_dir=data_dir)
        try:
            assert runtime.start([spec]) == {}
            ref = arena.put(np.random.default_rng(0).random(1 << 17), "input--in")
            wire = {"in": {"ref": ref.to_dict(), "meta": {}}}
            times = []
            for i in range(hops + 20):
                task = Task(f"h{i}", "hop", spec, {"tag": ""}, wire)
                started = time.perf_counter()
                result = runtime.submit(task).result()
                times.append(time.perf_counter() - started)
                out = result.outputs["out"]["ref"]["name"]
                if out != ref.name:  # an input returned unchanged is passed on, not copied
                    arena.free(out)  # steady state: buffers return to the pool
            return statistics.median(times[20:])  # the first hops warm caches and pools
        finally:
            runtime.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="docker,podman")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--hops", type=int, default=300)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--record", help="append the results to this markdown file")
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="oremda-bench-"))
    write_operator(folder, DESCRIPTION, PASSTHROUGH)
    registry = Registry([folder], builtin=False)
    spec = registry.get("passthrough")
    lines = [f"N = {args.n} workers; hop = 1 MB float64 in and out, median of {args.hops}", ""]
    lines += ["| runtime | cold start, 1 | cold start, N parallel | N / 1 | warm hop | hop vs local |"]
    lines += ["|---|---|---|---|---|---|"]

    results = {}
    for name in ["local", *[e for e in args.engines.split(",") if e]]:
        if name != "local":
            try:
                ImageBuilder(connect(engine=name), engine=name, registry=registry, log=lambda m: None).build()
            except RuntimeUnavailable as e:
                print(f"{name}: skipped ({e})")
                continue
        one = cold_start(name, spec, 1, folder, args.reps)
        many = cold_start(name, spec, args.n, folder, args.reps)
        hop = warm_hop(name, spec, folder, args.hops)
        results[name] = (one, many, hop)
        local_hop = results["local"][2]
        lines.append(
            f"| {name} | {one:.2f} s | {many:.2f} s | {many / one:.2f}x | {hop * 1e3:.3f} ms | {hop / local_hop:.2f}x |"
        )
        print(lines[-1], flush=True)

    print("\n".join(lines))
    for name, (one, many, hop) in results.items():
        if name != "local":
            ratio = hop / results["local"][2]
            verdict = "meets" if ratio <= 1.2 else "misses"
            print(f"{name}: warm hop {ratio:.2f}x the local runtime ({verdict} the 1.2x goal); "
                  f"{args.n} cold starts in parallel take {many / one:.2f}x one")  # fmt: skip
    if args.record:
        with open(args.record, "a") as f:
            f.write("\n".join(["", "## Containers", "", *lines, ""]))


if __name__ == "__main__":
    main()
