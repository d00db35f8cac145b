"""4D-STEM larger than memory: virtual detector and Bragg vector map from a .npy on disk, vs LiberTEM.

    python bench/bench_scale.py [--gib 28] [--bvm-gib 1] [--folder /var/tmp/oremda-scale]
        [--workers 2] [--budget-gib 2] [--libertem-python PATH] [--rounds 3] [--keep]
        [--record docs/benchmarks.md]

Generates ``scan.npy`` (``--gib`` GiB of uint16 patterns, ``--detector`` pixels square:
a zero beam and a lattice of weaker disks, Poisson noise; a block of scan rows repeated)
in ``--folder`` and removes it at the end unless ``--keep`` (28 GiB need that much free
disk). The Bragg vector map, which is compute-bound (an FFT per pattern), runs on
``bvm.npy``, the first ``--bvm-gib`` GiB of the same patterns.

Contenders, on the same cores (``--workers``):

* oremda, local runtime: ``npy_reader`` -> ``virtual_detector`` / ``bragg_vector_map``;
  the reader gives a lazy reference, ``--workers`` workers each read their partition in
  chunks within the memory budget (``--budget-gib``, ``Engine(shm_bytes=)``);
* oremda, MPI runtime with ``--workers`` ranks, the same pipeline;
* LiberTEM (its own ``npy`` dataset reading, ``pipelined`` executor with ``--workers``
  cpus): its ring analysis, and a UDF calling our ``bragg_map`` per partition. It runs
  in ``--libertem-python`` (an interpreter with libertem installed; default this one
  if it has libertem), in a child process.

Each run is timed after a warm-up on a small file; ``--rounds N`` times the virtual
detector N times per contender, in alternating order (round 1: local, MPI, LiberTEM;
round 2: LiberTEM, MPI, local; ...: the disk and the shared machine drift, and a fixed
order would favour whoever runs at the better moment), and reports the medians, every
run and each round's ratios (the Bragg vector map runs in round 1 only). ``--keep``
keeps the generated files, and a later run reuses a file of the same shape. Every run
starts cold: its file is dropped from the page cache first (``POSIX_FADV_DONTNEED``),
so no contender reads what an earlier one left there (with a file larger than memory,
the pages the previous runs read last, or twice, stay cached and would flatter whoever
runs next). A file smaller
than memory thus gives a quick cold-read stand-in for the larger-than-RAM run. Memory
growth is sampled every 0.1 s: RAM in use (MemTotal - MemAvailable, which counts
/dev/shm and leaves out reclaimable page cache) minus its value before the run. The
machine is shared: other processes move that figure too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per worker, for every contender
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from oremda_lab.dataplane import lazy  # noqa: E402
from oremda_lab.engine import Engine  # noqa: E402
from oremda_lab.spec.pipeline import Pipeline  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RING = {"inner_radius": 16.0, "outer_radius": 48.0}
GIB = 1 << 30


def patterns(rows: int, scan_x: int, detector: int, seed: int = 0) -> np.ndarray:
    """``rows`` scan rows of uint16 diffraction patterns: a zero beam and weaker Bragg disks, Poisson noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:detector, :detector] - detector // 2
    clean = np.zeros((rows, scan_x, detector, detector), np.float32)
    step = detector // 6
    for gy in range(-2, 3):
        for gx in range(-2, 3):
            disk = ((y - gy * step) ** 2 + (x - gx * step) ** 2 <= (detector // 20) ** 2).astype(np.float32)
            weight = 200.0 if gy == gx == 0 else rng.uniform(2, 10, (rows, scan_x, 1, 1)).astype(np.float32)
            clean += weight * disk
    return rng.poisson(clean).astype(np.uint16)


def generate(path: Path, gib: float, scan_x: int, detector: int) -> tuple[int, ...]:
    """Write a .npy of about ``gib`` GiB by repeating a block of scan rows; returns its shape.

    A file of that shape left by an earlier run (``--keep``) is used as it is.
    """
    block = patterns(16, scan_x, detector)
    rows = max(1, int(gib * GIB) // block[0].nbytes)
    shape = (rows, scan_x, detector, detector)
    if path.exists() and lazy.npy(path.parent, path.name).shape == shape:
        return shape
    header = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=shape)
    offset = header.offset
    del header
    with open(path, "r+b") as f:
        f.seek(offset)
        for start in range(0, rows, len(block)):
            f.write(block[: rows - start].tobytes())
        os.fsync(f.fileno())  # written before any contender runs: a writeback would slow it down
    return shape


def evict(path: Path) -> None:
    """Drop ``path``'s pages from the page cache (written back already: ``generate`` syncs)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


class Memory:
    """Samples RAM in use (MemTotal - MemAvailable) in a thread; ``growth`` is the peak over the start."""

    def __enter__(self) -> Memory:
        self.start = self.peak = used()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, used())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.start


def used() -> int:
    info = lazy.meminfo()
    return info["MemTotal"] - info["MemAvailable"]


def pipeline(filename: str, operator: str, params: dict) -> Pipeline:
    return Pipeline.from_json({
        "nodes": [{"id": "read", "image": "oremda/npy_reader", "params": {"filename": filename}},
                  {"id": "op", "image": f"oremda/{operator}", "params": params}],
        "edges": [{"type": "data", "from": {"id": "read", "port": "data"}, "to": {"id": "op", "port": "data"}}],
    })  # fmt: skip


def run_ours(folder: Path, runtime: str, workers: int, budget: int, jobs: list) -> dict:
    """Time each (name, file, operator, params) job on one engine, warmed on ``small.npy``."""
    os.environ["OREMDA_PARALLEL_WORKERS"] = str(workers)
    options = {"ranks": workers, "start_timeout": 120} if runtime == "mpi" else {}
    results = {}
    with Engine(runtime, folder, shm_bytes=budget, **options) as engine:
        for name, filename, operator, params in jobs:
            assert engine.run(pipeline("small.npy", operator, params)).ok  # workers started, code imported
            evict(folder / filename)
            with Memory() as memory:
                start = time.perf_counter()
                run = engine.run(pipeline(filename, operator, params))
                seconds = time.perf_counter() - start
            if not run.ok:
                raise RuntimeError(f"{runtime}: {run.errors}")
            out = run.outputs["op"]["image" if operator == "virtual_detector" else "out"].data
            np.save(folder / f"ours-{runtime}-{name}.npy", out)
            node = run.nodes["op"].duration_s  # its partitions, without the engine's work around them
            results[name] = {"seconds": seconds, "growth": memory.growth, "node_seconds": node}
    return results


LIBERTEM = r"""
import importlib.util, json, sys, time
import numpy as np
from libertem.api import Context
from libertem.udf import UDF

args = json.loads(sys.argv[1])
found = importlib.util.spec_from_file_location("bvm_run", args["bvm"])
bvm = importlib.util.module_from_spec(found)
found.loader.exec_module(bvm)
p = args["bvm_params"]

class BraggUDF(UDF):
    def get_result_buffers(self):
        return {"out": self.buffer(kind="single", extra_shape=tuple(self.meta.dataset_shape.sig), dtype=np.float64)}

    def process_partition(self, partition):
        self.results.out[:] += bvm.bragg_map(partition, p["template_radius"], p["threshold"], p["min_distance"],
                                             p["max_peaks"], p["edge"], p["relative_to"])

    def merge(self, dest, src):
        dest.out[:] += src.out

ctx = Context.make_with("pipelined", cpus=args["workers"])
def job(path, name):
    ds = ctx.load("npy", path=path)
    if name == "virtual_detector":
        c = ds.shape.sig[0] // 2
        ring = ctx.create_ring_analysis(dataset=ds, cx=c, cy=c, ri=args["ri"], ro=args["ro"])
        return lambda: ctx.run(ring).intensity.raw_data
    return lambda: ctx.run_udf(dataset=ds, udf=BraggUDF())["out"].data

for name, path in (("virtual_detector", args["small"]), ("bragg_vector_map", args["small"])):
    job(path, name)()  # warm: workers started, code imported
print("READY", flush=True)
sys.stdin.readline()
for name, path in args["jobs"]:
    run = job(path, name)
    start = time.perf_counter()
    out = run()
    seconds = time.perf_counter() - start
    np.save(args["out"] + f"-{name}.npy", out)
    print(json.dumps({"name": name, "seconds": seconds}), flush=True)
    sys.stdin.readline()
ctx.close()
"""


def run_libertem(python: str, folder: Path, workers: int, jobs: list, bvm_params: dict) -> dict:
    """LiberTEM in a child process; memory sampled here around each job."""
    args = {
        "bvm": str(ROOT / "operators" / "bragg_vector_map" / "run.py"), "bvm_params": bvm_params,
        "workers": workers, "ri": RING["inner_radius"], "ro": RING["outer_radius"],
        "small": str(folder / "small.npy"), "out": str(folder / "libertem"),
        "jobs": [(operator, str(folder / filename)) for _, filename, operator, _ in jobs],
    }  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the Bragg UDF imports our operator's module
    child = subprocess.Popen([python, "-c", LIBERTEM, json.dumps(args)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    results = {}
    try:
        while child.stdout.readline().strip() != "READY":
            if child.poll() is not None:
                raise RuntimeError("LiberTEM failed to start")
        for name, filename, *_ in jobs:
            evict(folder / filename)
            with Memory() as memory:
                child.stdin.write("\n")
                child.stdin.flush()
                line = child.stdout.readline()
            if not line:
                raise RuntimeError("LiberTEM ended early")
            results[name] = {"seconds": json.loads(line)["seconds"], "growth": memory.growth}
        child.stdin.write("\n")
        child.stdin.flush()
    finally:
        child.stdin.close()
        child.wait(timeout=120)
    return results


def libertem_python(given: str | None) -> str | None:
    if given:
        return given
    try:
        import libertem  # noqa: F401
    except ImportError:
        return None
    return sys.executable


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=28.0, help="size of the virtual-detector dataset")
    parser.add_argument("--bvm-gib", type=float, default=1.0, help="size of the Bragg-vector-map dataset")
    parser.add_argument("--detector", type=int, default=128)
    parser.add_argument("--scan-x", type=int, default=256)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "oremda-scale")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--budget-gib", type=float, default=2.0, help="the engine's memory budget")
    parser.add_argument("--runtimes", default="local,mpi")
    parser.add_argument("--libertem-python", help="a Python with libertem (default: this one, if it has it)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="virtual-detector rounds, contenders in alternating order"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated files (a later run reuses them)")
    parser.add_argument("--record", type=Path, help="append the results to this Markdown file")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(args.folder).free + sum(f.stat().st_size for f in args.folder.glob("*.npy"))
    if free < (args.gib + args.bvm_gib + 4) * GIB:  # leave 4 GiB: the machine may be shared
        sys.exit(f"{args.folder}: {free / GIB:.1f} GiB free, not enough for {args.gib + args.bvm_gib:g} GiB plus 4")
    try:
        started = time.perf_counter()
        shape = generate(args.folder / "scan.npy", args.gib, args.scan_x, args.detector)
        bvm_shape = generate(args.folder / "bvm.npy", args.bvm_gib, args.scan_x, args.detector)
        np.save(args.folder / "small.npy", patterns(2, 8, args.detector))
        print(f"generated {shape} and {bvm_shape} in {time.perf_counter() - started:.0f} s", flush=True)
        jobs = [("virtual_detector", "scan.npy", "virtual_detector", RING),
                ("bragg_vector_map", "bvm.npy", "bragg_vector_map", {})]  # fmt: skip
        python = libertem_python(args.libertem_python)
        contenders = [f"oremda {runtime}" for runtime in args.runtimes.split(",")]
        contenders += ["LiberTEM pipelined"] if python else []
        runs: list[dict] = []  # every timed run, in the order they ran
        for index in range(args.rounds):
            # Alternate: the disk and the shared machine drift, so no contender always runs first or last.
            order = contenders if index % 2 == 0 else contenders[::-1]
            todo = jobs if index == 0 else jobs[:1]  # the Bragg vector map (compute-bound) in round 1 only
            for who in order:
                if who.startswith("oremda"):
                    found = run_ours(args.folder, who.split()[1], args.workers, int(args.budget_gib * GIB), todo)
                else:
                    found = run_libertem(python, args.folder, args.workers, todo, bvm_params())
                print(f"round {index + 1}: {who} {found}", flush=True)
                runs += [{"round": index + 1, "who": who, "name": name, **r} for name, r in found.items()]
            if python:
                check_equal(args.folder, [name for name, *_ in todo], args.runtimes.split(","))
        text = report(args, shape, bvm_shape, contenders, runs)
        print(text)
        if args.record:
            record(args.record, text)
    finally:
        if not args.keep:
            shutil.rmtree(args.folder, ignore_errors=True)


def bvm_params() -> dict:
    from oremda_lab.registry import default_registry

    return default_registry().get("bragg_vector_map").resolved_params({})


def check_equal(folder: Path, names: list[str], runtimes: list[str]) -> None:
    """Every contender computed the same images (LiberTEM's are the reference)."""
    for name in names:
        reference = np.load(folder / f"libertem-{name}.npy")
        for runtime in runtimes:
            ours = np.load(folder / f"ours-{runtime}-{name}.npy")
            np.testing.assert_allclose(ours, reference.reshape(ours.shape), rtol=1e-4, err_msg=name)


def report(args: argparse.Namespace, shape: tuple, bvm_shape: tuple, contenders: list[str], runs: list[dict]) -> str:
    sizes = {"virtual_detector": (shape, np.prod(shape) * 2), "bragg_vector_map": (bvm_shape, np.prod(bvm_shape) * 2)}
    vd_gib = sizes["virtual_detector"][1] / GIB
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    frames = int(np.prod(bvm_shape[:2]))

    def of(who: str, name: str) -> list[dict]:
        return [r for r in runs if r["who"] == who and r["name"] == name]

    def rate(run: dict) -> float:
        return vd_gib / run["seconds"]

    medians = {who: float(np.median([rate(r) for r in of(who, "virtual_detector")])) for who in contenders}
    timed = "each run timed once" if args.rounds == 1 else (
        f"the virtual detector timed in {args.rounds} rounds, contenders in alternating order (median; "
        "memory growth: the largest)"
    )  # fmt: skip
    lines = [
        f"Data: uint16 .npy on disk, virtual detector on {shape} ({vd_gib:.1f} GiB; "
        f"RAM {ram / GIB:.0f} GiB), Bragg vector map on {bvm_shape} ({sizes['bragg_vector_map'][1] / GIB:.1f} GiB); "
        f"{args.workers} workers/ranks/cpus each; oremda budget {args.budget_gib:g} GiB; {timed}, its "
        "file evicted from the page cache first.",
        "",
        "| contender | virtual detector (GiB/s) | memory growth (GiB) | Bragg vector map (frames/s) "
        "| memory growth (GiB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for who in contenders:
        vd, (bvm,) = of(who, "virtual_detector"), of(who, "bragg_vector_map")
        lines.append(
            f"| {who} | {medians[who]:.2f} | {max(r['growth'] for r in vd) / GIB:.2f} | "
            f"{frames / bvm['seconds']:,.0f} | {bvm['growth'] / GIB:.2f} |"
        )
    lines.append("")
    if args.rounds > 1:
        lines += ["| round | order | virtual detector (GiB/s) | memory growth (GiB) |", "|---:|---|---|---|"]
        for index in range(1, args.rounds + 1):
            done = [r for r in runs if r["round"] == index and r["name"] == "virtual_detector"]
            speeds = ", ".join(f"{rate(r):.2f}" for r in done)
            growths = ", ".join(f"{r['growth'] / GIB:.2f}" for r in done)
            lines.append(f"| {index} | {', '.join(r['who'] for r in done)} | {speeds} | {growths} |")
        lines.append("")
    for who in contenders:
        for r in of(who, "virtual_detector"):
            if "node_seconds" in r:
                round_ = f", round {r['round']}" if args.rounds > 1 else ""
                lines.append(f"- {who}{round_}: the virtual detector node alone read {vd_gib / r['node_seconds']:.2f} "
                             f"GiB/s ({r['node_seconds']:.1f} s of the run's {r['seconds']:.1f} s)")  # fmt: skip
    if "LiberTEM pipelined" in contenders:
        theirs = "LiberTEM pipelined"
        (their_bvm,) = of(theirs, "bragg_vector_map")
        for who in contenders[:-1]:
            (bvm,) = of(who, "bragg_vector_map")
            median = "medians " if args.rounds > 1 else ""
            ratio = their_bvm["seconds"] / bvm["seconds"]
            lines.append(f"- {who} vs LiberTEM: virtual detector {median}{medians[who] / medians[theirs]:.2f}x, "
                         f"Bragg vector map {ratio:.2f}x (> 1: oremda faster)")  # fmt: skip
            if args.rounds > 1:
                pairs = [
                    rate(ours) / rate(their)
                    for ours, their in zip(of(who, "virtual_detector"), of(theirs, "virtual_detector"), strict=True)
                ]
                lines.append(f"  - per round: {', '.join(f'{p:.2f}x' for p in pairs)}")
    lines.append(
        f"- load average (1 min) when done: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine)"
    )
    return "\n".join(lines)


def record(path: Path, text: str) -> None:
    """Append a dated run under the "Larger than memory" section (created if missing)."""
    existing = path.read_text() if path.exists() else "# Benchmarks\n"
    heading = "\n## Larger than memory\n"
    if heading not in existing:
        existing = existing.rstrip("\n") + "\n" + heading + (
            "\nWritten by `python bench/bench_scale.py --record docs/benchmarks.md` (see docs/scale.md; "
            "CI does not run it).\n"
        )  # fmt: skip
    stamp = time.strftime("%Y-%m-%d %H:%M")
    given = {"--folder": "DIR", "--libertem-python": "PYTHON"}  # machine paths stay out of the record
    words = [given.get(before, word) for before, word in zip(["", *sys.argv[1:]], sys.argv[1:], strict=False)]
    command = " ".join(["python", "bench/bench_scale.py", *words])
    entry = f"\n### bench/bench_scale.py, {stamp}\n\n`{command}`\n\n{text}\n"
    start = existing.index(heading) + len(heading)
    end = existing.find("\n## ", start)  # the section ends where the next one starts
    end = len(existing) if end < 0 else end
    path.write_text(existing[:end].rstrip("\n") + "\n" + entry + existing[end:])


if __name__ == "__main__":
    main()
