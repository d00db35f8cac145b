"""Throughput of the 4D-STEM operators on MPI ranks, and side by side with LiberTEM.

    python bench/bench_mpi.py [--scan 128] [--reps 3] [--record docs/benchmarks.md]

Data: the abTEM-simulated MoS2 dataset of tests/operators/test_4dstem.py (16 x 16
scan, 64 x 64 detector, float32 counts), tiled to a --scan x --scan scan (the crystal
is periodic, so a larger scan over it repeats the same patterns). It is put once into
the engine's shared-memory session; every run then reads it from there, as a pipeline
being tuned does. LiberTEM gets the same array as a "memory" dataset (inline executor,
one core) and as a .npy file in the page cache (pipelined executor, --cores workers),
and runs the same algorithms: its own ring mask analysis (ApplyMasksUDF) for the
virtual detector, and a UDF calling our bragg_map() per partition for the Bragg
vector map. Throughput is frames (diffraction patterns) per second, best of --reps.
"""

import argparse
import importlib.util
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # every contender gets one thread per worker
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from oremda_lab.dataplane.arena import Arena  # noqa: E402
from oremda_lab.dataplane.refs import ObjectRef  # noqa: E402
from oremda_lab.registry import default_registry  # noqa: E402
from oremda_lab.runtime import make_runtime  # noqa: E402
from oremda_lab.runtime.base import Task  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
VD_PARAMS = {"inner_radius": 6.0, "outer_radius": 24.0}
BVM_PARAMS: dict = {}


def load(path: Path, name: str):
    found = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module


def dataset(scan: int) -> np.ndarray:
    sim = load(ROOT / "tests" / "operators" / "test_4dstem.py", "test_4dstem")
    base, info = sim.mos2_4dstem()
    reps = -(-scan // base.shape[0])
    data = np.tile(base, (reps, reps, 1, 1))[:scan, :scan]
    return np.ascontiguousarray(data), info


def best(fn, reps: int) -> float:
    fn()  # warm: workers started, code imported, pages mapped
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def ours(data: np.ndarray, runtime_name: str, reps: int, **options) -> dict[str, float]:
    registry = default_registry()
    out = {}
    with Arena.create() as arena:
        ref = arena.put(data, "bench--data")
        wire = {"data": {"ref": ref.to_dict(), "meta": {}}}
        with make_runtime(runtime_name, arena, start_timeout=120, **options) as runtime:
            for name, params in (("virtual_detector", VD_PARAMS), ("bragg_vector_map", BVM_PARAMS)):
                spec = registry.get(name)
                assert not runtime.start({name: spec})

                def once(spec=spec, params=params, name=name):
                    task = Task(f"b{uuid.uuid4().hex[:6]}", name, spec, spec.resolved_params(params), wire, slot=name)
                    result = runtime.submit(task).result(600)
                    for v in result.outputs.values():
                        arena.free(ObjectRef.from_dict(v["ref"]))

                out[name] = best(once, reps)
    return out


def libertem(data: np.ndarray, executor: str, cores: int, reps: int, folder: Path) -> dict[str, float]:
    from libertem.api import Context
    from libertem.udf import UDF

    bvm = load(ROOT / "operators" / "bragg_vector_map" / "run.py", "bvm_run")
    params = {**{k: p.default for k, p in default_registry().get("bragg_vector_map").params.items()}, **BVM_PARAMS}

    class BraggUDF(UDF):
        def get_result_buffers(self):
            return {"out": self.buffer(kind="single", extra_shape=tuple(self.meta.dataset_shape.sig), dtype=np.float64)}

        def process_partition(self, partition):
            self.results.out[:] += bvm.bragg_map(
                partition, params["template_radius"], params["threshold"], params["min_distance"],
                params["max_peaks"], params["edge"], params["relative_to"],
            )  # fmt: skip

        def merge(self, dest, src):
            dest.out[:] += src.out

    ctx = Context.make_with(executor, cpus=cores) if executor != "inline" else Context.make_with("inline")
    try:
        if executor == "inline":
            ds = ctx.load("memory", data=data, sig_dims=2)
        else:
            path = folder / "scan.npy"
            if not path.exists():
                np.save(path, data)
            ds = ctx.load("npy", path=str(path))
        c = data.shape[-1] // 2
        ring = ctx.create_ring_analysis(
            dataset=ds, cx=c, cy=c, ri=VD_PARAMS["inner_radius"], ro=VD_PARAMS["outer_radius"]
        )
        return {
            "virtual_detector": best(lambda: ctx.run(ring), reps),
            "bragg_vector_map": best(lambda: ctx.run_udf(dataset=ds, udf=BraggUDF()), reps),
        }
    finally:
        ctx.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scan", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--record", type=Path, help="append the table to this Markdown file's MPI section")
    args = parser.parse_args()
    data, info = dataset(args.scan)
    frames = data.shape[0] * data.shape[1]
    print(f"data: {data.shape} {data.dtype} ({data.nbytes / 2**20:.0f} MiB, {info['source']}), {args.cores} cores")
    results: dict[str, dict[str, float]] = {}
    results["oremda local (1 process)"] = ours(data, "local", args.reps)
    for ranks in sorted({1, 2, args.cores}):
        results[f"oremda mpi, {ranks} rank(s)"] = ours(data, "mpi", args.reps, ranks=ranks)
    with tempfile.TemporaryDirectory() as tmp:
        results["LiberTEM inline (1 core)"] = libertem(data, "inline", 1, args.reps, Path(tmp))
        results[f"LiberTEM pipelined ({args.cores} cores)"] = libertem(
            data, "pipelined", args.cores, args.reps, Path(tmp)
        )
    mpi_best = f"oremda mpi, {args.cores} rank(s)"
    lt_best = f"LiberTEM pipelined ({args.cores} cores)"
    lines = [
        f"Data: MoS2 4D-STEM ({info['source']}), scan {data.shape[0]} x {data.shape[1]}, detector "
        f"{data.shape[2]} x {data.shape[3]}, float32, {data.nbytes / 2**20:.0f} MiB; {args.cores} cores "
        f"({platform.processor() or platform.machine()}), Python {sys.version.split()[0]}; best of {args.reps}.",
        "",
        "| contender | virtual detector (frames/s) | Bragg vector map (frames/s) |",
        "|---|---:|---:|",
    ]
    for who, t in results.items():
        lines.append(f"| {who} | {frames / t['virtual_detector']:,.0f} | {frames / t['bragg_vector_map']:,.0f} |")
    lines.append("")
    for op in ("virtual_detector", "bragg_vector_map"):
        scaling = results["oremda mpi, 1 rank(s)"][op] / results[mpi_best][op]
        vs_lt = results[lt_best][op] / results[mpi_best][op]
        vs_inline = results["LiberTEM inline (1 core)"][op] / results["oremda mpi, 1 rank(s)"][op]
        lines.append(
            f"- {op}: {args.cores} ranks vs 1 rank: {scaling:.2f}x; oremda {args.cores} ranks vs {lt_best}: "
            f"{vs_lt:.2f}x; oremda 1 rank vs LiberTEM inline: {vs_inline:.2f}x (ratios > 1: oremda faster)"
        )
    lines.append(
        f"- load average (1 min) when done: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
        "(other jobs on the machine skew the multi-core numbers)"
    )
    text = "\n".join(lines)
    print(text)
    if args.record:
        record(args.record, text)


def record(path: Path, text: str) -> None:
    """Append a dated run under the "MPI" section (created if missing)."""
    existing = path.read_text() if path.exists() else "# Benchmarks\n"
    stamp = time.strftime("%Y-%m-%d %H:%M")
    entry = f"\n### bench/bench_mpi.py, {stamp}\n\n{text}\n"
    if "\n## MPI\n" not in existing:
        existing = (
            existing.rstrip("\n")
            + "\n\n## MPI\n\nWritten by `python bench/bench_mpi.py --record docs/benchmarks.md`.\n"
        )
        path.write_text(existing + entry)
        return
    head, _, tail = existing.partition("\n## MPI\n")
    section, sep, rest = tail.partition("\n## ")
    path.write_text(head + "\n## MPI\n" + section.rstrip("\n") + "\n" + entry + (sep + rest if sep else ""))


if __name__ == "__main__":
    main()
