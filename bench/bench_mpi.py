"""Throughput of the 4D-STEM operators on MPI ranks, and side by side with LiberTEM.

    python bench/bench_mpi.py [--scan 128] [--reps 3] [--images podman] [--record docs/benchmarks.md]

Data: the abTEM-simulated MoS2 dataset of tests/operators/test_4dstem.py (16 x 16
scan, 64 x 64 detector, float32 counts), tiled to a --scan x --scan scan (the crystal
is periodic, so a larger scan over it repeats the same patterns). It is put once into
the engine's shared-memory session; every run then reads it from there, as a pipeline
being tuned does. LiberTEM gets the same array as a "memory" dataset (inline executor,
one core) and as a .npy file in the page cache (pipelined executor, --cores workers),
and runs the same algorithms: its own ring mask analysis (ApplyMasksUDF) for the
virtual detector, and a UDF calling our bragg_map() per partition for the Bragg
vector map. Throughput is frames (diffraction patterns) per second, best of --reps
rounds; each round runs every contender in turn, so changing load hits all alike.

``--images podman`` adds the same ranks running the operators inside their images
(``MPIRuntime(images="podman")``: one container per rank, the kernel's MPI bound in)
and reports their time against ranks in the kernel's Python (goal: within 1.1x).
Without LiberTEM installed its rows are left out.
"""

import argparse
import contextlib
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
PARAMS = {"virtual_detector": {"inner_radius": 6.0, "outer_radius": 24.0}, "bragg_vector_map": {}}


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


class Ours:
    """One oremda runtime with the data in its session; ``run(op)`` runs one task."""

    def __init__(self, stack: contextlib.ExitStack, arena: Arena, ref: ObjectRef, runtime_name: str, **options):
        self.arena = arena
        self.wire = {"data": {"ref": ref.to_dict(), "meta": {}}}
        self.runtime = stack.enter_context(make_runtime(runtime_name, arena, start_timeout=120, **options))
        self.specs = {name: default_registry().get(name) for name in PARAMS}
        assert not self.runtime.start(self.specs)

    def run(self, name: str) -> None:
        spec = self.specs[name]
        task = Task(f"b{uuid.uuid4().hex[:6]}", name, spec, spec.resolved_params(PARAMS[name]), self.wire, slot=name)
        result = self.runtime.submit(task).result(600)
        for v in result.outputs.values():
            self.arena.free(ObjectRef.from_dict(v["ref"]))


class LiberTEM:
    """A LiberTEM context on the same data; ``run(op)`` runs the same analysis."""

    def __init__(self, stack: contextlib.ExitStack, data: np.ndarray, executor: str, cores: int, folder: Path):
        from libertem.api import Context
        from libertem.udf import UDF

        bvm = load(ROOT / "operators" / "bragg_vector_map" / "run.py", "bvm_run")
        spec = default_registry().get("bragg_vector_map")
        p = spec.resolved_params(PARAMS["bragg_vector_map"])

        class BraggUDF(UDF):
            def get_result_buffers(self):
                sig = tuple(self.meta.dataset_shape.sig)
                return {"out": self.buffer(kind="single", extra_shape=sig, dtype=np.float64)}

            def process_partition(self, partition):
                self.results.out[:] += bvm.bragg_map(
                    partition, p["template_radius"], p["threshold"], p["min_distance"],
                    p["max_peaks"], p["edge"], p["relative_to"],
                )  # fmt: skip

            def merge(self, dest, src):
                dest.out[:] += src.out

        if executor == "inline":
            self.ctx = Context.make_with("inline")
            ds = self.ctx.load("memory", data=data, sig_dims=2)
        else:
            self.ctx = Context.make_with(executor, cpus=cores)
            path = folder / "scan.npy"
            np.save(path, data)
            ds = self.ctx.load("npy", path=str(path))
        stack.callback(self.ctx.close)
        c = data.shape[-1] // 2
        vd = PARAMS["virtual_detector"]
        ring = self.ctx.create_ring_analysis(dataset=ds, cx=c, cy=c, ri=vd["inner_radius"], ro=vd["outer_radius"])
        self.jobs = {
            "virtual_detector": lambda: self.ctx.run(ring),
            "bragg_vector_map": lambda: self.ctx.run_udf(dataset=ds, udf=BraggUDF()),
        }

    def run(self, name: str) -> None:
        self.jobs[name]()


def measure(contenders: dict, reps: int) -> dict[str, dict[str, float]]:
    """Best time per contender and operator; rounds interleave contenders, so load drift hits all alike."""
    best = {who: dict.fromkeys(PARAMS, float("inf")) for who in contenders}
    for c in contenders.values():  # warm: workers started, code imported, pages mapped
        for name in PARAMS:
            c.run(name)
    for _ in range(reps):
        for who, c in contenders.items():
            for name in PARAMS:
                start = time.perf_counter()
                c.run(name)
                best[who][name] = min(best[who][name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scan", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--record", type=Path, help="append the table to this Markdown file's MPI section")
    parser.add_argument("--images", choices=("podman", "apptainer"), help="also run the ranks in operator images")
    args = parser.parse_args()
    libertem = importlib.util.find_spec("libertem") is not None
    mpi_best = f"oremda mpi, {args.cores} rank(s)"
    lt_best = f"LiberTEM pipelined ({args.cores} cores)"
    in_images = f"oremda mpi in {args.images} images, {args.cores} rank(s)"
    data, info = dataset(args.scan)
    frames = data.shape[0] * data.shape[1]
    print(f"data: {data.shape} {data.dtype} ({data.nbytes / 2**20:.0f} MiB, {info['source']}), {args.cores} cores")
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        arena = stack.enter_context(Arena.create())
        ref = arena.put(data, "bench--data")
        contenders = {"oremda local (1 process)": Ours(stack, arena, ref, "local")}
        for ranks in sorted({1, 2, args.cores}):
            contenders[f"oremda mpi, {ranks} rank(s)"] = Ours(stack, arena, ref, "mpi", ranks=ranks)
        if args.images:
            contenders[in_images] = Ours(stack, arena, ref, "mpi", ranks=args.cores, images=args.images)
        if libertem:
            contenders["LiberTEM inline (1 core)"] = LiberTEM(stack, data, "inline", 1, Path(tmp))
            contenders[lt_best] = LiberTEM(stack, data, "pipelined", args.cores, Path(tmp))
        results = measure(contenders, args.reps)
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
        line = f"- {op}: {args.cores} ranks vs 1 rank: {scaling:.2f}x"
        if libertem:
            vs_lt = results[lt_best][op] / results[mpi_best][op]
            vs_inline = results["LiberTEM inline (1 core)"][op] / results["oremda mpi, 1 rank(s)"][op]
            line += (
                f"; oremda {args.cores} ranks vs {lt_best}: {vs_lt:.2f}x; oremda 1 rank vs LiberTEM inline: "
                f"{vs_inline:.2f}x (ratios > 1: oremda faster)"
            )
        if args.images:
            line += (
                f"; ranks in {args.images} images take {results[in_images][op] / results[mpi_best][op]:.2f}x "
                f"the time of ranks in the kernel's Python (goal: at most 1.1x)"
            )
        lines.append(line)
    if not libertem:
        lines.append("- LiberTEM is not installed here: its rows are left out (`pip install libertem`)")
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
