"""The direct path in JupyterLab 4 and Notebook 7: slider steps cost the page no kernel statuses.

An init script wraps the page's WebSocket and decodes the header of every kernel message
(JupyterLab's binary protocol, v1.kernel.websocket.jupyter.org: a table of offsets, then
the channel, header, parent header, metadata, content), counting the kernel's ``status``
messages. Over the direct path a slider step brings none; over the comm each step is a
shell message with its busy and idle. The notebook also shows an ipywidgets slider bound to
the parameter, which the editor moves: it must not send the values back (sigma 1.7 is one
its step arithmetic would have changed in the last bit, see ``slider_position``).
"""

import json
import sys

from lab import EDITOR, FRAME, ROOT, SLIDER, run_all_cells, run_code_in_new_cell, value_is, write_notebook

sys.path.insert(0, str(ROOT / "tests" / "widget"))
from widget_helpers import BLUR_DISPLAY  # noqa: E402

CELLS = [
    "from oremda_lab import Pipeline, PipelineEditor\n\n"
    f"pipeline = Pipeline.from_json({json.dumps(BLUR_DISPLAY)})\neditor = PipelineEditor(pipeline)\neditor",
    'editor.slider("blur", "sigma")',
    "print('ready')",  # new cells go below this one
]

COUNT_STATUSES = """
window.__statuses = 0;
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(...args) {
    super(...args);
    this.addEventListener('message', (ev) => {
      if (!(ev.data instanceof ArrayBuffer)) return;
      const view = new DataView(ev.data);
      const n = Number(view.getBigUint64(0, true));
      if (n < 3) return;
      const at = (i) => Number(view.getBigUint64(8 * (i + 1), true));
      const header = new TextDecoder().decode(new Uint8Array(ev.data, at(1), at(2) - at(1)));
      if (header.includes('"msg_type": "status"') || header.includes('"msg_type":"status"')) window.__statuses += 1;
    });
  }
};
"""


def steps(page, n):
    """Press ArrowRight ``n`` times on the sigma slider, each time until its picture is drawn; statuses seen."""
    page.evaluate("() => { window.__statuses = 0; }")
    for _ in range(n):
        frame = page.evaluate(FRAME)
        page.locator(SLIDER).focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_function(
            f"() => ({FRAME})() > {frame} && document.querySelector('[data-run-state]').dataset.runState === 'done'",
            timeout=30_000,
        )
    page.wait_for_timeout(500)  # a late status would still count
    return page.evaluate("() => window.__statuses")


def test_slider_steps_on_the_direct_path_bring_no_kernel_statuses(page, front):
    page.add_init_script(COUNT_STATUSES)
    write_notebook(front.root / "notebooks" / "direct_path.ipynb", CELLS)
    front.open(page, "notebooks/direct_path.ipynb")
    run_all_cells(page)
    page.wait_for_function(f"() => ({FRAME})() >= 1", timeout=90_000)
    page.locator(".react-flow__node[data-id='blur'] .oremda-node-title b").click()
    page.wait_for_selector(f"{EDITOR}[data-requests='direct']", timeout=10_000)
    page.wait_for_timeout(1000)  # the kernel's idle after the cells

    assert steps(page, 3) == 0
    value_is(page, "1.8")

    # The same steps over the comm: each is a shell message, bracketed by busy and idle.
    run_code_in_new_cell(page, "editor.direct_requests = False; print('comm')")
    page.wait_for_selector(f"{EDITOR}[data-requests='comm']", timeout=10_000)
    page.wait_for_timeout(1000)
    assert steps(page, 3) >= 6
    value_is(page, "2.1")
    assert run_code_in_new_cell(page, 'print(pipeline.nodes["blur"].params["sigma"])').strip() == "2.1"
