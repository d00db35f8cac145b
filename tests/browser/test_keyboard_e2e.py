"""Every editor control by keyboard, in JupyterLab 4 and in Notebook 7.

Notebook 7 matches its keyboard shortcuts in the capture phase, starting at the focused
element; a focused slider inside an output used to match the command-mode binding for
ArrowRight (``:focus`` selectors), so the value stayed and focus jumped to a cell. Here
the keys go to: the slider (arrows), a dropdown (arrows), the palette (search, arrows,
Enter), a number box (type, Enter), a checkbox (Space), and the canvas (Delete, Ctrl+Z).
The nodes added by keyboard leave the graph partly built: they wait, the rest still runs.
"""

from lab import EDITOR, FRAME, SLIDER, VALUE, run_all_cells, run_code_in_new_cell, value_is


def kernel_says(page, code: str) -> str:
    return run_code_in_new_cell(page, code).strip()


def test_every_control_by_keyboard(page, front):
    front.open(page, "notebooks/getting_started.ipynb")
    run_all_cells(page)
    page.locator(EDITOR).first.wait_for(timeout=60_000)
    page.wait_for_function(f"() => ({FRAME})() >= 1", timeout=90_000)
    active = "() => document.activeElement.dataset.param"

    # Arrow keys move the focused slider (one gesture), the display follows.
    page.locator(".react-flow__node[data-id='blur'] .oremda-node-title b").click()
    slider = page.locator(SLIDER)
    slider.focus()
    frame = page.evaluate(FRAME)
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    assert page.locator(VALUE).inner_text() == "2"
    assert page.evaluate(active) == "sigma"  # focus stayed
    page.wait_for_function(
        f"() => ({FRAME})() > {frame} && document.querySelector('[data-run-state]').dataset.runState === 'done'",
        timeout=30_000,
    )
    front.shot(page, "kb-01-slider")

    # Ctrl+Z in the editor undoes the gesture (not a notebook cell action).
    page.keyboard.press("Control+z")
    value_is(page, "1.5")

    # A dropdown takes the arrow keys too (the kernel gets the next choice).
    page.locator("select[data-param='mode']").focus()
    page.keyboard.press("ArrowDown")
    page.wait_for_function("() => document.querySelector(\"select[data-param='mode']\").value === '\"nearest\"'")
    assert page.evaluate(active) == "mode"

    # The palette: type in the search box, Enter adds the first match (and selects it).
    page.locator(".oremda-search").focus()
    page.keyboard.type("virtual_detector")
    page.keyboard.press("Enter")
    page.wait_for_selector(".react-flow__node[data-id='virtual_detector1']")
    page.wait_for_selector(".oremda-params[data-node='virtual_detector1']")
    # A number box: type a value, Enter sends it.
    page.locator("input[data-param='inner_radius']").focus()
    page.keyboard.press("Control+a")
    page.keyboard.type("6")
    page.keyboard.press("Enter")
    page.wait_for_function("() => !document.querySelector(\"[data-param-row='inner_radius'][data-pending]\")")
    # ArrowDown from the search box walks the list; Enter adds the focused item.
    page.locator(".oremda-search").focus()
    page.keyboard.press("Control+a")
    page.keyboard.type("fourier")
    page.keyboard.press("ArrowDown")
    assert page.evaluate("() => document.activeElement.dataset.operator") == "fft2d"
    page.keyboard.press("Enter")
    page.wait_for_selector(".oremda-params[data-node='fft2d1']")
    # A checkbox: Space toggles it.
    page.locator("input[data-param='shift']").focus()
    page.keyboard.press("Space")
    page.wait_for_function("() => document.querySelector(\"input[data-param='shift']\").checked")
    front.shot(page, "kb-02-palette-number-checkbox")
    code = 'n = pipeline.nodes; print(n["virtual_detector1"].params["inner_radius"], n["fft2d1"].params["shift"])'
    assert kernel_says(page, code) == "6 True"

    # The graph is only partly built now: the new nodes wait and say why, the rest still runs.
    # Back to the editor first (the new cell scrolled it away; Lab then skips rendering it).
    page.locator(EDITOR).first.evaluate("e => e.scrollIntoView({block: 'start'})")
    for node, port in (("virtual_detector1", "data"), ("fft2d1", "in")):
        waiting = page.locator(f".oremda-node[data-node-id='{node}'][data-state='waiting'] .oremda-node-waiting")
        waiting.wait_for()
        assert waiting.inner_text() == f"waiting for input: {port}"
    page.locator(".react-flow__node[data-id='blur'] .oremda-node-title b").click()
    page.locator(SLIDER).focus()
    frame = page.evaluate(FRAME)
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        f"() => ({FRAME})() > {frame} && document.querySelector('[data-run-state]').dataset.runState === 'done'",
        timeout=30_000,
    )
    value_is(page, "1.6")
    page.keyboard.press("Control+z")
    value_is(page, "1.5")

    # Delete removes the selected node; Ctrl+Z brings it back; the notebook's cells are untouched.
    cells = page.locator(".jp-Notebook .jp-Cell").count()
    page.locator(".react-flow__node[data-id='pic'] .oremda-node-title b").click()
    page.keyboard.press("Delete")
    page.wait_for_function("() => !document.querySelector(\".react-flow__node[data-id='pic']\")")
    page.keyboard.press("Control+z")
    page.wait_for_selector(".react-flow__node[data-id='pic']")
    assert page.locator(".jp-Notebook .jp-Cell").count() == cells
    front.shot(page, "kb-03-delete-undo")
    code = 'p = pipeline.nodes["blur"].params; print(p["sigma"], p["mode"], "pic" in pipeline.nodes)'
    assert kernel_says(page, code) == "1.5 nearest True"
