"""Pictures reach the page without the frame files too (a kernel whose frames the server cannot serve).

The getting-started test checks that pictures come as frame files through the server
extension; here the kernel writes its frames where the server does not look (as a remote
kernel would), so the handshake fails and pictures travel inside the messages, in
JupyterLab 4 and in Notebook 7.
"""

import json
import sys

from lab import ROOT, run_all_cells
from test_editor_e2e import CANVAS, CHECKSUM

sys.path.insert(0, str(ROOT / "tests" / "widget"))
from widget_helpers import BLUR_DISPLAY  # noqa: E402

CELL = (
    "import os, tempfile\n"
    "os.environ['OREMDA_FRAMES_DIR'] = tempfile.mkdtemp()  # not where the server serves frames from\n"
    "from oremda_lab import Pipeline, PipelineEditor\n"
    f"editor = PipelineEditor(Pipeline.from_json({json.dumps(BLUR_DISPLAY)}), height=330)\neditor"
)


def test_pictures_come_in_messages_when_the_server_cannot_serve_the_kernels_frames(page, front):
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": CELL}
    doc = {"cells": [cell], "metadata": {"kernelspec": kernel}, "nbformat": 4, "nbformat_minor": 5}
    (front.root / "frames_fallback.ipynb").write_text(json.dumps(doc))
    front.open(page, "frames_fallback.ipynb")
    run_all_cells(page)
    shown = f'() => Number(document.querySelector("{CANVAS}")?.dataset.frame || 0) >= 1'
    page.wait_for_function(shown, timeout=90_000)
    page.locator(".react-flow__node[data-id='blur'] .oremda-node-title b").click()
    slider = page.locator("input[type=range][data-param='sigma']")
    frame, before = page.locator(CANVAS).evaluate(CHECKSUM)
    slider.focus()
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(
        f'() => Number(document.querySelector("{CANVAS}").dataset.frame) > {frame}'
        " && document.querySelector('[data-run-state]').dataset.runState === 'done'",
        timeout=30_000,
    )
    _, after = page.locator(CANVAS).evaluate(CHECKSUM)
    assert after != before
    assert page.locator(CANVAS).get_attribute("data-source") == "message"
    front.shot(page, "frames-fallback")
