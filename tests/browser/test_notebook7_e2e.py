"""The editor's keyboard in Jupyter Notebook 7, whose shortcuts see keys before the editor does.

Notebook 7 matches its keyboard shortcuts in the capture phase, starting at the focused
element; a focused slider inside an output used to match the command-mode binding for
ArrowRight (``:focus`` selectors), so the value stayed and focus jumped to a cell.
"""

from lab import EDITOR, FRAME, SLIDER, VALUE, open_notebook, run_all_cells, run_code_in_new_cell, shot, value_is


def test_keyboard_in_notebook7(page, notebook_url):
    open_notebook(page, notebook_url, "notebooks/getting_started.ipynb", app="notebook")
    run_all_cells(page)
    page.locator(EDITOR).first.wait_for(timeout=60_000)
    page.wait_for_function(f"() => ({FRAME})() >= 1", timeout=90_000)
    cells = page.locator(".jp-Notebook .jp-Cell").count()

    # Arrow keys move the focused slider (one gesture), the display follows.
    page.locator(".react-flow__node[data-id='blur'] .oremda-node-title b").click()
    slider = page.locator(SLIDER)
    slider.focus()
    frame = page.evaluate(FRAME)
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    assert page.locator(VALUE).inner_text() == "2"
    assert page.evaluate("() => document.activeElement.dataset.param") == "sigma"  # focus stayed
    page.wait_for_function(
        f"() => ({FRAME})() > {frame} && document.querySelector('[data-run-state]').dataset.runState === 'done'",
        timeout=30_000,
    )
    shot(page, "nb7-01-slider")

    # Ctrl+Z in the editor undoes the gesture (not a notebook cell action).
    page.keyboard.press("Control+z")
    value_is(page, "1.5")

    # A dropdown takes the arrow keys too (the kernel gets the next choice).
    page.locator("select[data-param='mode']").focus()
    page.keyboard.press("ArrowDown")
    page.wait_for_function("() => document.querySelector(\"select[data-param='mode']\").value === '\"nearest\"'")
    assert page.evaluate("() => document.activeElement.dataset.param") == "mode"

    # Delete removes the selected node; Ctrl+Z brings it back; the notebook's cells are untouched.
    page.locator(".react-flow__node[data-id='pic'] .oremda-node-title b").click()
    page.keyboard.press("Delete")
    page.wait_for_function("() => !document.querySelector(\".react-flow__node[data-id='pic']\")")
    page.keyboard.press("Control+z")
    page.wait_for_selector(".react-flow__node[data-id='pic']")
    assert page.locator(".jp-Notebook .jp-Cell").count() == cells
    shot(page, "nb7-02-delete-undo")
    code = 'p = pipeline.nodes["blur"].params; print(p["sigma"], p["mode"], "pic" in pipeline.nodes)'
    kernel = run_code_in_new_cell(page, code)
    assert kernel.strip() == "1.5 nearest True"
