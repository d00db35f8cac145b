"""Slider latency in a real browser: editor (engine + canvas) vs plain scipy + matplotlib.

Opens a generated notebook in a real JupyterLab with headless Chromium, then for each of
two setups presses the slider's ArrowRight key MOVES times (one sigma step each, waiting
for the result) and measures, in the page, the time from the keydown to the updated
image being on screen (after the next animation frame; for the baseline after the PNG
has decoded):

* ``editor``: the PipelineEditor's sigma slider on ncem_reader -> gaussian_blur ->
  picture -> 2D display, warm local workers, picture bytes drawn on a canvas;
* ``bound``: the same pipeline and display, moved by ``editor.slider("blur", "sigma")``
  (a standard ipywidgets FloatSlider bound to the parameter);
* ``baseline``: an ipywidgets FloatSlider whose callback runs scipy's gaussian_filter in
  the kernel and shows the matplotlib figure (PNG) in an Output widget.

Image: the real 1024x1024 MoS2 HAADF image (temul-toolkit 0.1.9 wheel, fetched by
tests/data_fixtures.py). Usage::

    python bench/bench_slider.py [--moves 50] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "browser")]

import nbformat  # noqa: E402
from data_fixtures import data_folder  # noqa: E402
from lab import ARTIFACTS, chromium_page, jupyter_lab, open_notebook, run_all_cells  # noqa: E402

IMAGE = "example_Se_implanted_MoS2.dm3"
NODELAY = "oremda_lab.widget.server.NoDelayConnection"

SETUP = """\
import numpy as np
from oremda_lab import Engine, Pipeline, PipelineEditor
DATA = {data!r}
engine = Engine("local", data_dir=DATA)
pipeline = Pipeline.from_json({{
    "nodes": [
        {{"id": "reader", "image": "oremda/ncem_reader", "params": {{"filename": {image!r}}}}},
        {{"id": "blur", "image": "oremda/gaussian_blur", "params": {{"sigma": 1.5}}}},
        {{"id": "pic", "image": "oremda/picture"}},
        {{"id": "view", "type": "display", "display": "2D"}},
    ],
    "edges": [
        {{"type": "data", "from": {{"id": "reader", "port": "image"}}, "to": {{"id": "blur", "port": "image"}}}},
        {{"type": "data", "from": {{"id": "blur", "port": "image"}}, "to": {{"id": "pic", "port": "in"}}}},
        {{"type": "display", "from": {{"id": "pic", "port": "out"}}, "to": {{"id": "view", "port": "in"}}}},
    ],
}})
editor = PipelineEditor(pipeline, engine, height=300)
bound = editor.slider("blur", "sigma")
bound.add_class("bench-bound")
display(editor, bound)
"""

BASELINE = """\
import io
import ipywidgets as w
from IPython.display import Image, display
from matplotlib.figure import Figure
from rsciio.digitalmicrograph import file_reader
from scipy.ndimage import gaussian_filter

image = file_reader(DATA + "/" + {image!r})[0]["data"].astype(np.float32)
fig = Figure(figsize=(5, 5), dpi=100)
ax = fig.add_subplot()
art = ax.imshow(gaussian_filter(image, 1.5), cmap="gray")
ax.set_axis_off()
out = w.Output()
out.add_class("bench-baseline")
slider = w.FloatSlider(value=1.5, min=0, max=50, step=0.1, description="baseline sigma")
slider.add_class("bench-baseline-slider")

def show(_=None):
    art.set_data(gaussian_filter(image, slider.value))
    art.autoscale()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    with out:
        out.clear_output(wait=True)
        display(Image(buf.getvalue()))

slider.observe(show, "value")
show()
w.VBox([slider, out])
"""

# Arms a measurement: t0 at the next keydown (capture phase, before any handler), t1 once
# the new image is on screen. Resolves with t1 - t0 in ms.
ARM = """kind => {
  window.__t0 = null;
  window.__result = undefined;
  document.addEventListener('keydown', () => { window.__t0 = performance.now(); }, {capture: true, once: true});
  const painted = (resolve) =>
    requestAnimationFrame(() => setTimeout(() => resolve(window.__result = performance.now() - window.__t0), 0));
  window.__done = new Promise((resolve) => {
    if (kind === 'editor' || kind === 'bound') {
      const c = document.querySelector("canvas[data-display='view']");
      const start = c.dataset.frame;
      const obs = new MutationObserver(() => {
        if (c.dataset.frame !== start) { obs.disconnect(); painted(resolve); }
      });
      obs.observe(c, {attributes: true});
    } else {
      const box = document.querySelector('.bench-baseline');
      const src0 = box.querySelector('img')?.src;
      const obs = new MutationObserver(() => {
        const img = box.querySelector('img');
        if (img && img.src !== src0) {
          obs.disconnect();
          img.decode().then(() => painted(resolve), () => painted(resolve));
        }
      });
      obs.observe(box, {childList: true, subtree: true, attributes: true});
    }
  });
}"""


def make_notebook(folder: Path, data: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}}
    nb.cells = [
        nbformat.v4.new_code_cell(SETUP.format(data=str(data), image=IMAGE)),
        nbformat.v4.new_code_cell(BASELINE.format(image=IMAGE)),
    ]
    path = folder / "bench_slider.ipynb"
    nbformat.write(nb, path)
    return path


def measure(page, kind: str, slider, moves: int, warmup: int, traces: list | None = None) -> list[float]:
    times = []
    for i in range(warmup + moves):
        page.evaluate("() => { window.__oremdaTrace = []; }")
        page.evaluate(ARM, kind)
        slider.press("ArrowRight")
        try:
            page.wait_for_function("() => window.__result !== undefined", timeout=30_000)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / f"bench-{kind}-stuck.png"))
            raise
        dt = page.evaluate("() => window.__result")
        if i >= warmup:
            times.append(dt)
            if traces is not None:
                marks = page.evaluate("() => window.__oremdaTrace.map(([l, t]) => [l, t - window.__t0])")
                if kind != "baseline":  # the run bar says "done (63 ms)": the engine's own run time
                    label = page.locator("[data-run-state]").first.inner_text()
                    found = re.search(r"done \(([0-9.]+) (ms|s)\)", label)
                    if found:
                        marks.append(["engine run", float(found[1]) * (1 if found[2] == "ms" else 1000)])
                    kernel = page.locator("[data-run-state]").first.get_attribute("data-kernel-ms")
                    if kernel:
                        marks.append(["kernel", float(kernel)])
                traces.append(marks)
        time.sleep(0.15)  # let the kernel go idle: each move is measured on its own
    return times


PHASES = ("send set_param", "change:graph", "change:displays", "drawn", "engine run", "kernel")


def phases(traces: list[list]) -> dict[str, float]:
    """Median time from the keydown to the first of each mark the editor records."""
    found: dict[str, list[float]] = {}
    for marks in traces:
        seen = set()
        for label, t in marks:
            if label not in seen and label in PHASES:
                seen.add(label)
                found.setdefault(label, []).append(t)
    return {label: round(statistics.median(ts), 1) for label, ts in found.items()}


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    median = statistics.median(times)
    return {"median_ms": median, "p95_ms": p95, "min_ms": ordered[0], "max_ms": ordered[-1], "n": len(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--nodelay", action="store_true", help=f"serve Lab with {NODELAY} (TCP_NODELAY)")
    ap.add_argument("--markdown", action="store_true", help="print a section for docs/benchmarks.md")
    ap.add_argument("--trace", action="store_true", help="print the editor's timing marks for a few moves")
    args = ap.parse_args()
    data = data_folder([IMAGE])
    with tempfile.TemporaryDirectory(prefix="oremda-bench-") as tmp:
        make_notebook(Path(tmp), data)
        extra = (f"--ServerApp.kernel_websocket_connection_class={NODELAY}",) if args.nodelay else ()
        with jupyter_lab(root=Path(tmp), extra_args=extra) as url, chromium_page(1400, 1400) as page:
            open_notebook(page, url, "bench_slider.ipynb")
            run_all_cells(page)
            page.wait_for_function(
                "() => Number(document.querySelector(\"canvas[data-display='view']\")?.dataset.frame || 0) >= 1",
                timeout=120_000,
            )
            page.wait_for_selector(".bench-baseline img", timeout=60_000)
            page.locator(".react-flow__node[data-id='blur'] .oremda-node-title b").click()
            editor_slider = page.locator("input[type=range][data-param='sigma']")
            bound_slider = page.locator(".bench-bound .noUi-handle").first
            baseline_slider = page.locator(".bench-baseline-slider .noUi-handle").first
            results = {}
            for kind, slider in (("editor", editor_slider), ("bound", bound_slider), ("baseline", baseline_slider)):
                slider.scroll_into_view_if_needed()
                traces: list = []
                results[kind] = summary(measure(page, kind, slider, args.moves, args.warmup, traces))
                if kind != "baseline":
                    results[kind]["phases_ms"] = phases(traces)
                if kind == "editor" and args.trace:
                    for marks in traces[:5]:
                        print(" ".join(f"{label}@{t:.0f}" for label, t in marks))
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / f"bench-{kind}.png"))
            sigma_editor = page.locator("[data-param-value='sigma']").inner_text()
            sigma_baseline = page.locator(".bench-baseline-slider .widget-readout").first.inner_text()
    results["final_sigma"] = {"editor": sigma_editor, "baseline": sigma_baseline}
    results["load_average_1min"] = os.getloadavg()[0]
    results["server"] = NODELAY if args.nodelay else "jupyter_server default (Nagle on)"
    results["when"] = time.strftime("%Y-%m-%d %H:%M")
    print(json.dumps(results, indent=2))
    print(f"{'setup':10} {'median ms':>10} {'p95 ms':>10}")
    for kind in ("editor", "bound", "baseline"):
        r = results[kind]
        print(f"{kind:10} {r['median_ms']:10.1f} {r['p95_ms']:10.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.markdown:
        print()
        print(markdown(results, args))


LABELS = {
    "editor": "editor panel slider -> engine (warm local workers) -> canvas",
    "bound": "`editor.slider()` (ipywidgets FloatSlider) -> engine -> canvas",
    "baseline": "ipywidgets FloatSlider -> scipy in the kernel -> matplotlib PNG in an Output widget",
}


def markdown(results: dict, args: argparse.Namespace) -> str:
    lines = [
        f"### bench/bench_slider.py, {results['when']}",
        "",
        f"{args.moves} moves (+{args.warmup} warm-up) of one sigma step each, 1024x1024 MoS2 (uint32), "
        f"sigma from 1.5; headless Chromium, JupyterLab, 2 cores; kernel websocket: {results['server']}.",
        "",
        "| path | median (ms) | p95 (ms) | min (ms) |",
        "|---|---:|---:|---:|",
    ]
    for kind in ("editor", "bound", "baseline"):
        r = results[kind]
        lines.append(f"| {LABELS[kind]} | {r['median_ms']:.0f} | {r['p95_ms']:.0f} | {r['min_ms']:.0f} |")
    lines += ["", f"- load average (1 min) when done: {results['load_average_1min']:.1f} on 2 cores"]
    ph = results["editor"].get("phases_ms", {})
    if ph:
        lines.append(
            "- editor slider, median ms after the keydown: message sent {send}, graph echoed {graph}, "
            "display data arrived {disp}, canvas drawn {drawn}; the rest is the browser painting. "
            "The engine's run itself (blur + picture on warm workers) took {run} ms, and the kernel "
            "{kernel} ms from receiving the change to sending the results (medians)".format(
                send=ph.get("send set_param"), graph=ph.get("change:graph"), disp=ph.get("change:displays"),
                drawn=ph.get("drawn"), run=ph.get("engine run"), kernel=ph.get("kernel"),
            )
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
