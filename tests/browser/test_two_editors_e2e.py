"""Two editors in one notebook on one engine, the Run button, the Examples menu, and the
parameter panel beside the node it edits; in JupyterLab 4 and in Notebook 7.

Editor A runs on every edit; editor B has ``auto_run=False`` (a Run button). Both share
one Engine: A's slider updates A's display only, and B's stays as it was.
"""

import json
import sys

from lab import ROOT, run_all_cells, run_code_in_new_cell, start_code_in_new_cell, write_notebook
from test_editor_e2e import CHECKSUM

sys.path.insert(0, str(ROOT / "tests" / "widget"))
from widget_helpers import BLUR_DISPLAY  # noqa: E402

CELLS = [
    "from oremda_lab import Engine, Pipeline, PipelineEditor\n\n"
    f"engine = Engine()\ndoc = {json.dumps(BLUR_DISPLAY)}\n"
    "a = PipelineEditor(Pipeline.from_json(doc), engine, height=330)\na",
    "b = PipelineEditor(Pipeline.from_json(doc), engine, auto_run=False, height=330)\nb",
]
# No overlap between two boxes, and `inner` lies inside `outer`.
APART = "(a, b) => a.x + a.width <= b.x || b.x + b.width <= a.x || a.y + a.height <= b.y || b.y + b.height <= a.y"
INSIDE = "(i, o) => i.x >= o.x && i.y >= o.y && i.x + i.width <= o.x + o.width && i.y + i.height <= o.y + o.height"
STATES = "ns => ns.map(n => n.dataset.nodeId + ':' + n.dataset.state)"
# A third editor on its own engine, with an operator that counts slowly and reports progress.
PROGRESS_CELL = f"""import sys, tempfile
sys.path.insert(0, {str(ROOT / "tests" / "widget")!r})
from widget_helpers import STEPS_OPERATOR, STEPS_RUN
from oremda_lab.registry import Registry
from oremda_lab.testing import write_operator
ops = tempfile.mkdtemp()
write_operator(ops, STEPS_OPERATOR, STEPS_RUN)
slow = Engine("inline", registry=Registry([ops]))
c = PipelineEditor({{"nodes": [{{"id": "count", "image": "oremda/steps", "params": {{"n": 16}}}}], "edges": []}}, slow)
c"""


def frame(editor) -> int:
    return int(editor.locator("canvas[data-display='view']").get_attribute("data-frame") or 0)


def wait_frame(page, index: int, above: int, timeout: float = 90_000) -> None:
    """Wait until editor ``index`` has drawn its display more than ``above`` times and its run is done."""
    page.wait_for_function(
        """([i, n]) => {
          const ed = document.querySelectorAll('.oremda-editor')[i];
          const c = ed?.querySelector("canvas[data-display='view']");
          const run = ed?.querySelector('[data-run-state]')?.dataset.runState;
          return c && Number(c.dataset.frame || 0) > n && run === 'done';
        }""",
        arg=[index, above],
        timeout=timeout,
    )


def check_panel_beside(page, editor, node: str) -> None:
    """Select ``node``: the docked panel shows it and does not cover it; the node stays in view."""
    editor.locator(f".react-flow__node[data-id='{node}'] .oremda-node-title b").click()
    editor.locator(f".oremda-params[data-node='{node}']").wait_for()
    boxes = f"""() => {{
      const ed = document.querySelectorAll('.oremda-editor')[0];
      const r = e => {{
        const b = e.getBoundingClientRect();
        return {{x: b.x, y: b.y, width: b.width, height: b.height}};
      }};
      return [r(ed.querySelector(".react-flow__node[data-id='{node}']")), r(ed.querySelector('.oremda-side')),
              r(ed.querySelector('.react-flow'))];
    }}"""
    # The view pans the node into sight once the narrower canvas is measured.
    page.wait_for_function(f"() => {{ const [n, p, c] = ({boxes})(); return ({APART})(n, p) && ({INSIDE})(n, c); }}")
    node, panel, canvas = page.evaluate(boxes)
    assert node["x"] + node["width"] <= panel["x"], (node, panel)  # left of the panel
    assert canvas["x"] <= node["x"] and canvas["y"] <= node["y"], (node, canvas)
    assert node["x"] + node["width"] <= canvas["x"] + canvas["width"], (node, canvas)
    assert node["y"] + node["height"] <= canvas["y"] + canvas["height"], (node, canvas)


def test_two_editors_share_one_engine(page, front):
    write_notebook(front.root / "notebooks" / "two_editors.ipynb", CELLS)
    front.open(page, "notebooks/two_editors.ipynb")
    run_all_cells(page)
    a, b = page.locator(".oremda-editor").nth(0), page.locator(".oremda-editor").nth(1)
    b.wait_for(timeout=60_000)
    wait_frame(page, 0, 0)

    # B does not run by itself: it has a Run button (A has none), and it runs when pressed.
    assert a.locator("button[data-action='run']").count() == 0
    assert b.locator("[data-run-state]").get_attribute("data-run-state") == "idle"
    assert b.locator("canvas[data-display='view']").count() == 0  # nothing drawn yet
    b.locator("button[data-action='run']").click()
    wait_frame(page, 1, 0)
    b_pixels = b.locator("canvas[data-display='view']").evaluate(CHECKSUM)

    # A's slider runs A only: B's display, run and node states stay as they were.
    b_states = b.locator(".oremda-node").evaluate_all(STATES)
    a.locator(".react-flow__node[data-id='blur'] .oremda-node-title b").click()
    before = frame(a)
    a.locator("input[type=range][data-param='sigma']").focus()
    for _ in range(10):
        page.keyboard.press("ArrowRight")
    wait_frame(page, 0, before)
    # A's run is done, so B has heard all of A's events; anything B would have sent went
    # out before this cell's output (one kernel channel, in order).
    sigmas = 'print(a.pipeline.nodes["blur"].params["sigma"], b.pipeline.nodes["blur"].params["sigma"], b.run["state"])'
    assert run_code_in_new_cell(page, sigmas).strip() == "2.5 1.5 done"
    assert b.locator("canvas[data-display='view']").evaluate(CHECKSUM) == b_pixels
    assert b.locator("[data-run-state]").get_attribute("data-run-state") == "done"
    assert b.locator(".oremda-node").evaluate_all(STATES) == b_states

    # The parameter panel is docked beside the canvas: it never covers the node being edited,
    # also for the rightmost node (the view pans to keep it visible).
    a.scroll_into_view_if_needed()
    check_panel_beside(page, a, "blur")
    check_panel_beside(page, a, "view")
    front.shot(page, "two-01-panel-beside-node")

    # The Examples menu loads a bundled pipeline into B (undoable); A is untouched.
    b.locator("select[data-action='examples']").select_option("eels_background")
    b.locator(".react-flow__node[data-id='background']").wait_for()
    assert "Loaded example eels_background" in b.locator(".oremda-message-info").inner_text()
    assert a.locator(".react-flow__node").count() == 5
    front.shot(page, "two-02-example", b)
    kernel = run_code_in_new_cell(page, "print(len(a.pipeline.nodes), sorted(b.pipeline.nodes)[:3])").strip()
    assert kernel == "5 ['background', 'plot_background', 'plot_spectrum']"
    b.locator("button[data-action='undo']").click()
    b.locator(".react-flow__node[data-id='blur']").wait_for()
    assert b.locator(".react-flow__node").count() == 5

    # A long run shows its progress on the node: a bar and the operator's message.
    start_code_in_new_cell(page, PROGRESS_CELL)
    counting = page.locator(".oremda-editor").nth(2).locator(".oremda-node[data-node-id='count']")
    bar = counting.locator(".oremda-node-progress[data-progress]")
    bar.wait_for(timeout=60_000)
    assert counting.get_attribute("data-state") == "running"
    assert 0 < float(bar.get_attribute("data-progress")) < 1
    assert bar.locator(".oremda-progress-msg").inner_text().endswith("/16 steps")
    front.shot(page, "two-03-progress", page.locator(".oremda-editor").nth(2))
    page.locator(".oremda-editor").nth(2).locator(".oremda-node[data-node-id='count'][data-state='done']").wait_for()
    assert counting.locator(".oremda-node-progress").count() == 0
