"""End to end: the getting-started notebook in JupyterLab 4 and Notebook 7, driven like a user would.

Screenshots of every step land in tests/browser/artifacts/ (prefixed lab- or notebook-).
"""

import json
from pathlib import Path

from lab import ARTIFACTS, run_all_cells, run_code_in_new_cell

EDITOR = ".oremda-editor"
CANVAS = "canvas[data-display='view']"
CHECKSUM = """c => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let s = 0;
  for (let i = 0; i < d.length; i += 4) s = (s * 31 + d[i]) | 0;
  return [Number(c.dataset.frame), s];
}"""


def handle(page, node, port, side):
    node = page.locator(f".react-flow__node[data-id='{node}']")
    return node.locator(f".react-flow__handle[data-handleid='{port}'][data-port-side='{side}']")


def drag_between(page, source, target):
    a, b = source.bounding_box(), target.bounding_box()
    page.mouse.move(a["x"] + a["width"] / 2, a["y"] + a["height"] / 2)
    page.mouse.down()
    page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2, steps=12)
    page.mouse.up()


def test_getting_started(page, front):
    shot = front.shot
    front.open(page, "notebooks/getting_started.ipynb")
    run_all_cells(page)
    editor = page.locator(EDITOR).first
    editor.wait_for(timeout=60_000)
    assert editor.get_attribute("data-lm-suppress-shortcuts") == "true"

    # The first run starts workers, then the display shows the blurred image.
    shown = f'() => Number(document.querySelector("{CANVAS}")?.dataset.frame || 0) >= 1'
    page.wait_for_function(shown, timeout=90_000)
    page.wait_for_selector(".oremda-node[data-node-id='blur']:is([data-state='done'], [data-state='cached'])")
    editor.scroll_into_view_if_needed()
    # Edits travel the direct path (the server extension's relay), not the comm.
    page.wait_for_selector(f"{EDITOR}[data-requests='direct']", timeout=10_000)
    shot(page, "01-opened")
    nodes_before = page.locator(".react-flow__node").count()
    assert nodes_before == 5

    # Drag an operator from the palette onto the canvas.
    page.fill(".oremda-search", "blur")
    pane = page.locator(".react-flow__pane").first
    box = pane.bounding_box()
    page.locator(".oremda-palette-item[data-operator='gaussian_blur']").drag_to(
        pane, target_position={"x": box["width"] * 0.45, "y": box["height"] * 0.8}
    )
    page.wait_for_selector(".react-flow__node[data-id='gaussian_blur1']")
    assert page.locator(".react-flow__node").count() == nodes_before + 1
    page.fill(".oremda-search", "")
    shot(page, "02-dropped")

    # Connect two ports: read.out (data) -> gaussian_blur1.image (data).
    edges_before = page.locator(".react-flow__edge").count()
    drag_between(page, handle(page, "read", "out", "out"), handle(page, "gaussian_blur1", "image", "in"))
    page.wait_for_function(f"() => document.querySelectorAll('.react-flow__edge').length === {edges_before + 1}")
    shot(page, "03-connected")

    # A mismatched connection is refused, with the reason shown.
    drag_between(page, handle(page, "data", "data", "out"), handle(page, "pic", "in", "in"))
    message = page.locator(".oremda-message-error")
    message.wait_for(timeout=10_000)
    assert "binary output data.data cannot feed a data input" in message.inner_text()
    assert page.locator(".react-flow__edge").count() == edges_before + 1
    shot(page, "04-refused")

    # Move the sigma slider: the display image changes.
    page.locator(".react-flow__node[data-id='blur'] .oremda-node-title b").click()
    slider = page.locator("input[type=range][data-param='sigma']")
    slider.wait_for()
    frame, before = page.locator(CANVAS).evaluate(CHECKSUM)
    slider.focus()
    for _ in range(20):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(
        f'() => Number(document.querySelector("{CANVAS}").dataset.frame) > {frame}'
        " && document.querySelector('[data-run-state]').dataset.runState === 'done'",
        timeout=30_000,
    )
    _, after = page.locator(CANVAS).evaluate(CHECKSUM)
    assert after != before
    assert page.locator("[data-param-value='sigma']").inner_text() == "3.5"
    shot(page, "05-slider")

    # Undo puts sigma back (one entry for the whole slider gesture).
    page.click("button[data-action='undo']")
    page.wait_for_function("() => document.querySelector(\"[data-param-value='sigma']\").textContent === '1.5'")

    # Export the JSON and compare with the kernel's pipeline.
    with page.expect_download() as download:
        page.click("button[data-action='export']")
    exported = json.loads(Path(download.value.path()).read_text())
    kernel = json.loads(run_code_in_new_cell(page, "import json; print(json.dumps(editor.pipeline.to_json()))"))
    assert exported == kernel
    assert {n["id"] for n in exported["nodes"]} == {"data", "read", "blur", "pic", "view", "gaussian_blur1"}
    assert all("position" in n for n in exported["nodes"])
    assert next(n for n in exported["nodes"] if n["id"] == "blur")["params"]["sigma"] == 1.5
    new_edge = {"type": "data", "from": {"id": "read", "port": "out"}, "to": {"id": "gaussian_blur1", "port": "image"}}
    assert new_edge in exported["edges"]
    shot(page, "06-exported")

    # Import a file: the kernel's pipeline becomes it.
    edited = json.loads(json.dumps(exported))
    next(n for n in edited["nodes"] if n["id"] == "blur")["params"]["sigma"] = 2.5
    (ARTIFACTS / "imported.json").write_text(json.dumps(edited))
    page.set_input_files("input[data-action='import']", str(ARTIFACTS / "imported.json"))
    page.locator(".oremda-message-info").wait_for()
    assert "Imported imported.json" in page.locator(".oremda-message-info").inner_text()
    kernel = run_code_in_new_cell(page, 'print(pipeline.nodes["blur"].params["sigma"])')
    assert kernel.strip() == "2.5"

    # Delete a node with the keyboard, then undo: it comes back with its edge.
    page.locator(".react-flow__node[data-id='gaussian_blur1'] .oremda-node-title b").click()
    page.keyboard.press("Delete")
    page.wait_for_function("() => !document.querySelector(\".react-flow__node[data-id='gaussian_blur1']\")")
    page.wait_for_function(f"() => document.querySelectorAll('.react-flow__edge').length === {edges_before}")
    page.keyboard.press("Control+z")
    page.wait_for_selector(".react-flow__node[data-id='gaussian_blur1']")
    page.wait_for_function(f"() => document.querySelectorAll('.react-flow__edge').length === {edges_before + 1}")
    assert page.locator(".jp-Notebook .jp-Cell").count() >= 10  # Lab's own shortcuts did not fire

    # Edits from Python show on the canvas; a failing node shows its error and log.
    page.locator(".react-flow__node[data-id='blur'] .oremda-node-title b").click()
    run_code_in_new_cell(page, 'pipeline.set_param("blur", "sigma", 4.0); print("ok")')
    page.wait_for_function("() => document.querySelector(\"[data-param-value='sigma']\").textContent === '4'")
    run_code_in_new_cell(page, 'pipeline.set_param("read", "series", 7); print("ok")')
    error = page.locator(".oremda-node[data-node-id='read'] .oremda-node-error")
    error.wait_for(timeout=30_000)
    assert page.locator(".oremda-node[data-node-id='read']").get_attribute("data-state") == "error"
    assert error.locator(".oremda-node-error-msg").inner_text().strip()
    assert page.locator(".oremda-node[data-node-id='blur']").get_attribute("data-state") == "skipped"
    page.locator(EDITOR).first.scroll_into_view_if_needed()
    shot(page, "07-node-error")
