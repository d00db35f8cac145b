"""Per-operator environments: worker start and hops, venv vs the kernel's environment.

Run: ``python bench/bench_environments.py`` (about a minute on 2 cores once uv's wheel
cache holds numpy and pyarrow). Side by side in one run:

1. worker start with a cached per-operator venv vs the kernel's environment (warm: the
   environment exists and its fork server runs; goal within 1.2x), the first worker of
   each (fork server start), the cached environment lookup, and the cold creation of
   the environment in an empty environment cache (uv's wheel cache warm);
2. a hop between operators in two different environments vs in the same one (goal
   within 1.1x: the data plane does not care which Python maps the buffer).

The venv operator pins the kernel's own numpy and pyarrow plus one small package the
kernel lacks at that version, so both sides import the same libraries.
"""

from __future__ import annotations

import importlib.metadata
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from oremda_lab.dataplane.arena import Arena
from oremda_lab.registry import Registry
from oremda_lab.runtime import Task, environments, make_runtime
from oremda_lab.testing import write_operator

COPY = textwrap.dedent(
    """
    import numpy as np
    from oremda_lab.worker.sdk import PortValue, operator

    @operator
    def copy(inputs, params):
        return {"out": PortValue(inputs["in"].data.copy(), {"numpy": np.__version__})}
    """
)
# Same numpy and pyarrow as the kernel; an old iniconfig the kernel does not have forces a venv.
LIKE_KERNEL = [f"numpy=={importlib.metadata.version('numpy')}", f"pyarrow=={importlib.metadata.version('pyarrow')}",
               "iniconfig==1.1.1"]  # fmt: skip
OLD_STACK = ["numpy==1.26.4", "pyarrow==15.0.2"]


def describe(name: str, requirements: list[str]) -> dict:
    return {
        "name": name,
        "entrypoint": "run",
        "requirements": requirements,
        "ports": {"input": {"in": {"type": "data", "required": False}}, "output": {"out": {"type": "data"}}},
        "params": {"tag": {"type": "string", "default": ""}},
    }


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:8.3f} ms"


def row(label: str, value: str, ratio: str = "", goal: str = "") -> None:
    print(f"  {label:<56} {value:>14}  {ratio:>10}  {goal}")


def bench_start(registry: Registry, repeats: int = 15) -> None:
    print(f"\n1. Worker start (median of {repeats}; warm: environment made, fork server running)")
    kernel, venv = registry.get("kernel_copy"), registry.get("venv_copy")
    started = time.perf_counter()
    env = environments.ensure_environment(venv)  # made once here if this machine never made it
    assert env.kind == "venv", env
    made = time.perf_counter() - started
    lookups = {}
    for name, spec in (("kernel", kernel), ("venv", venv)):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            environments.ensure_environment(spec)
            times.append(time.perf_counter() - t)
        lookups[name] = statistics.median(times)
    first, warm = {}, {}
    with Arena.create() as arena:
        runtime = make_runtime("local", arena)
        try:
            for name, spec in (("kernel", kernel), ("venv", venv)):
                t = time.perf_counter()
                assert not runtime.start({f"{name}-first": spec})
                first[name] = time.perf_counter() - t
            times = {"kernel": [], "venv": []}
            for i in range(repeats):  # interleaved, each in turn first, so load changes hit both alike
                for name, spec in (("kernel", kernel), ("venv", venv))[:: 1 if i % 2 else -1]:
                    t = time.perf_counter()
                    assert not runtime.start({f"{name}-{i}": spec})
                    times[name].append(time.perf_counter() - t)
            warm = {name: statistics.median(values) for name, values in times.items()}
        finally:
            runtime.stop()
    ratio = warm["venv"] / warm["kernel"]
    row("warm worker start, kernel environment", ms(warm["kernel"]))
    row("warm worker start, per-operator venv", ms(warm["venv"]), f"{ratio:8.2f}x", "goal <= 1.2x")
    row("first worker, kernel (starts its fork server)", ms(first["kernel"]))
    row("first worker, venv (starts its fork server)", ms(first["venv"]), f"{first['venv'] / first['kernel']:8.2f}x")
    row("environment lookup, kernel (the rule)", ms(lookups["kernel"]))
    row("environment lookup, cached venv (rule, lock, marker)", ms(lookups["venv"]))
    if made > 0.5:
        row("(this run created the venv first)", f"{made:8.2f} s")


def bench_cold(registry: Registry) -> None:
    print("\n   Cold creation in an empty environment cache (uv's wheel cache warm)")
    for name in ("venv_copy", "old_copy"):
        spec = registry.get(name)
        with tempfile.TemporaryDirectory() as cache:
            os.environ[environments.CACHE_ENV] = cache
            try:
                messages = []
                t = time.perf_counter()
                environments.ensure_environment(spec, messages.append)
                took = time.perf_counter() - t
            finally:
                del os.environ[environments.CACHE_ENV]
        creating = next(m for m in messages if m.startswith("creating"))
        row(f"{name}: resolve + venv + install", f"{took:8.2f} s", "", "(" + creating.split("(")[1].split(")")[0] + ")")


def bench_hop(registry: Registry, repeats: int = 300) -> None:
    print(f"\n2. Hop from one operator to the next, 1 MiB float64, each copies it (median of {repeats})")
    array = np.random.default_rng(1).random(1 << 17)
    # label -> (first operator, second operator); each pair gets its own two workers
    chains = {
        "same environment: kernel -> kernel": ("kernel_copy", "kernel_copy"),
        "same environment: venv -> venv": ("venv_copy", "venv_copy"),
        "two environments: kernel -> venv (same numpy)": ("kernel_copy", "venv_copy"),
        "two environments: kernel -> venv (numpy 1.26, pyarrow 15)": ("kernel_copy", "old_copy"),
    }
    results: dict[str, list[float]] = {label: [] for label in chains}
    with Arena.create() as arena:
        runtime = make_runtime("local", arena)
        try:
            slots = {}
            for k, (a, b) in enumerate(chains.values()):
                slots[f"{k}a"], slots[f"{k}b"] = registry.get(a), registry.get(b)
            assert not runtime.start(slots)
            source = arena.put(array, "input--in")
            wire = {"in": {"ref": source.to_dict(), "meta": {}}}
            labels = list(chains)
            for i in range(repeats):
                for turn in range(len(labels)):  # interleaved, each in turn first
                    k = (i + turn) % len(labels)
                    t = time.perf_counter()
                    a, b = f"{k}a", f"{k}b"
                    first = runtime.submit(Task(f"a{i}-{k}", "a", slots[a], {"tag": ""}, wire, a))
                    middle = first.result().outputs["out"]
                    second = runtime.submit(Task(f"b{i}-{k}", "b", slots[b], {"tag": ""}, {"in": middle}, b))
                    out = second.result().outputs["out"]
                    results[labels[k]].append(time.perf_counter() - t)
                    arena.free(middle["ref"]["name"])
                    arena.free(out["ref"]["name"])
        finally:
            runtime.stop()
    base = statistics.median(results[labels[0]])
    for label, values in results.items():
        value = statistics.median(values)
        goal = "goal <= 1.1x" if label == labels[2] else ""
        row(label, ms(value), f"{value / base:8.2f}x", goal)


def main() -> None:
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} cores, "
          f"environments in {environments.cache_root()}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ops"
        for name, requirements in (("kernel_copy", []), ("venv_copy", LIKE_KERNEL), ("old_copy", OLD_STACK)):
            write_operator(folder, describe(name, requirements), COPY)
        registry = Registry([folder], builtin=False)
        bench_start(registry)
        bench_cold(registry)
        bench_hop(registry)


if __name__ == "__main__":
    main()
