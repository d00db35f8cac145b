"""The request channel in JupyterLab 4 and Notebook 7: a kernel that does not answer never freezes a control.

Requests take the direct path (through the server extension) while it is open, else the
comm. The kernel stops answering twice: its editor turns the direct path off and drops
comm messages (the handler is removed from a cell), then the kernel is restarted (the
comm and the direct socket are gone). Screenshots land in tests/browser/artifacts/.
"""

from lab import (
    EDITOR,
    ERROR,
    FRAME,
    ROW,
    SLIDER,
    VALUE,
    lab_menu,
    run_all_cells,
    run_code_in_new_cell,
    value_is,
)


def open_editor(page):
    run_all_cells(page)
    page.locator(EDITOR).first.wait_for(timeout=60_000)
    page.wait_for_function(f"() => ({FRAME})() >= 1", timeout=90_000)
    page.locator(".react-flow__node[data-id='blur'] .oremda-node-title b").click()
    page.locator(SLIDER).wait_for()
    value_is(page, "1.5")
    page.wait_for_selector(f"{EDITOR}[data-requests='direct']", timeout=10_000)


def test_an_unanswered_request_fails_visibly_and_frees_the_control(page, front):
    shot = front.shot
    front.open(page, "notebooks/getting_started.ipynb")
    open_editor(page)
    timeout_ms = int(page.locator(EDITOR).first.get_attribute("data-request-timeout-ms"))

    # The kernel stops answering the editor: the direct path closes (the front end falls back
    # to the comm) and the comm's message handler is unregistered (a kernel busy in a long
    # cell still answers comm messages with ipykernel 7, so that cannot be used).
    deaf = 'editor.direct_requests = False; editor.on_msg(editor._on_msg, remove=True); print("deaf")'
    run_code_in_new_cell(page, deaf)
    page.wait_for_selector(f"{EDITOR}[data-requests='comm']", timeout=10_000)
    page.locator(SLIDER).focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_selector(f"{ROW}[data-pending]", timeout=5_000)
    assert page.locator(VALUE).inner_text() == "1.6"  # the thumb follows the key at once

    # After the timeout: the failure shows on the control and in the message bar, the
    # control is no longer pending, and it shows the kernel's value again.
    page.wait_for_selector(f"{EDITOR}[data-kernel='lost']", timeout=timeout_ms + 3_000)
    assert "no answer from the kernel" in page.locator(ERROR).inner_text()
    assert "The kernel did not answer (set_param)" in page.locator(".oremda-message-error").inner_text()
    assert page.locator(f"{ROW}[data-pending]").count() == 0
    value_is(page, "1.5", timeout=5_000)
    shot(page, "channel-01-no-answer")

    # The kernel listens again (on both paths): the control works at once, the editor re-syncs
    # from the kernel, and the new value is one undo step (the lost edit was never recorded).
    run_code_in_new_cell(page, 'editor.on_msg(editor._on_msg); editor.direct_requests = True; print("listening")')
    page.wait_for_selector(f"{EDITOR}[data-requests='direct']", timeout=10_000)
    frame = page.evaluate(FRAME)
    page.locator(SLIDER).focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_selector(f"{EDITOR}[data-kernel='ok']", timeout=5_000)
    page.locator(".oremda-message-info", has_text="The kernel answers again").wait_for()
    page.wait_for_function(
        f"() => ({FRAME})() > {frame} && document.querySelector('[data-run-state]').dataset.runState === 'done'",
        timeout=30_000,
    )
    assert page.locator(ERROR).count() == 0
    value_is(page, "1.6")
    shot(page, "channel-02-back")
    assert run_code_in_new_cell(page, 'print(pipeline.nodes["blur"].params["sigma"])').strip() == "1.6"
    page.click("button[data-action='undo']")
    value_is(page, "1.5")
    assert page.locator("button[data-action='undo']").is_disabled()

    # A restarted kernel has no editor any more: the control fails (at once or after the
    # timeout), is usable, and says to run the cell again.
    lab_menu(page, "Kernel", "Restart Kernel")
    page.locator(".jp-Dialog .jp-mod-accept").click()
    assert run_code_in_new_cell(page, 'print("editor" in globals())').strip() == "False"  # the new kernel
    page.wait_for_selector(f"{EDITOR}[data-requests='comm']", timeout=10_000)  # the old kernel's socket is gone
    page.locator(SLIDER).focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_selector(f"{EDITOR}[data-kernel='lost']", timeout=timeout_ms + 3_000)
    page.wait_for_selector(ERROR)
    page.wait_for_function(f'() => !document.querySelector("{ROW}[data-pending]")', timeout=timeout_ms + 3_000)
    assert "run the editor's cell again" in page.locator(".oremda-message-error").inner_text()
    value_is(page, "1.5", timeout=5_000)
    shot(page, "channel-03-restarted")
    # Nothing is frozen: the next key press is a new attempt, which fails visibly again.
    page.locator(".oremda-message-error button").click()
    page.locator(SLIDER).focus()
    page.keyboard.press("ArrowRight")
    page.locator(".oremda-message-error").wait_for(timeout=timeout_ms + 3_000)
    page.wait_for_function(f'() => !document.querySelector("{ROW}[data-pending]")', timeout=timeout_ms + 3_000)
    value_is(page, "1.5", timeout=5_000)

    # Running the cell again gives an editor of the new kernel's pipeline.
    run_all_cells(page)
    page.wait_for_function(f"() => ({FRAME})() >= 1", timeout=90_000)
    editor = page.locator(f"{EDITOR}[data-kernel='ok'][data-requests='direct']").first
    editor.wait_for()
    page.locator(".react-flow__node[data-id='blur'] .oremda-node-title b").first.click()
    value_is(page, "1.5")
    shot(page, "channel-04-rerun")
