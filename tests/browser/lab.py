"""A real JupyterLab server and a headless Chromium page, for the browser tier.

The server runs from the repository root with an empty workspace folder (a restored
workspace can focus the wrong notebook) and no token, on a free loopback port; it is
stopped by its pid. Chromium is Debian's (``/usr/bin/chromium``): Playwright's own
browser downloads do not work on these machines.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from oremda_lab.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = os.environ.get("OREMDA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]

# Each app by its module in this Python: `jupyter lab` would run whichever `jupyter-lab` is
# first on PATH, which may be another Python's without this package's server extension.
MODULES = {"lab": "jupyterlab", "notebook": "notebook", "server": "jupyter_server"}


def server_log(app: str = "lab") -> Path:
    """Where :func:`jupyter_lab` writes the log of an ``app`` server it starts."""
    return ARTIFACTS / f"jupyter-{app}.log"


@contextmanager
def jupyter_lab(
    root: Path = ROOT, timeout: float = 90.0, extra_args: tuple[str, ...] = (), app: str = "lab",
    base_url: str = "/", token: str = "",
):  # fmt: skip
    """Start ``jupyter lab`` (``app="notebook"``: Notebook 7; ``"server"``: jupyter_server alone) and yield its URL.

    The URL ends with the base URL, without a trailing slash; the log is
    :func:`server_log`. The server is stopped by pid afterwards.
    """
    port = free_port()
    workspaces = tempfile.mkdtemp(prefix="oremda-lab-ws-")
    # No "get notified about Jupyter news?" toast: it covers the bottom right of the page.
    settings = Path(workspaces) / "settings"
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}'
    )
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(server_log(app), "w")  # noqa: SIM115 (closed below)
    cmd = [
        sys.executable, "-m", MODULES[app], "--no-browser", "--allow-root",
        f"--IdentityProvider.token={token}", "--ServerApp.password=", "--ip", "127.0.0.1", "--port", str(port),
        f"--ServerApp.root_dir={root}", f"--ServerApp.base_url={base_url}",
    ]  # fmt: skip
    if app == "lab":
        cmd += [f"--LabApp.workspaces_dir={workspaces}", f"--LabApp.user_settings_dir={settings}",
                "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]  # fmt: skip
    elif app == "notebook":
        cmd += [f"--JupyterNotebookApp.workspaces_dir={workspaces}",
                f"--JupyterNotebookApp.user_settings_dir={settings}"]  # fmt: skip
    cmd += extra_args
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}{base_url.rstrip('/')}"
    status = f"{url}/api/status" + (f"?token={token}" if token else "")
    try:
        end = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(status, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"jupyter {app} did not start; see {log.name}")
            time.sleep(0.3)
        yield url
    finally:
        # The server and its kernels share a session (process group) that we made.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)
        log.close()
        shutil.rmtree(workspaces, ignore_errors=True)


@contextmanager
def chromium_page(width: int = 1400, height: int = 1000):
    """A Playwright page in headless system Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
            yield context.new_page()
        finally:
            browser.close()


def open_notebook(page, url: str, path: str, timeout: float = 60_000, app: str = "lab") -> None:
    """Open a notebook in Lab (or ``app="notebook"``: Notebook 7) and wait until its kernel is idle."""
    # ?reset: Lab starts from an empty workspace, not with the tabs an earlier test left open.
    address = f"{url}/lab/tree/{path}?reset" if app == "lab" else f"{url}/notebooks/{path}"
    page.goto(address, wait_until="domcontentloaded")
    page.wait_for_selector(".jp-NotebookPanel", timeout=timeout)
    wait_kernel_idle(page, timeout)
    accept_kernel_dialog(page)


def stop_kernels(url: str) -> None:
    """Shut down every session's kernel on the server (its editors' engines and workers go with it)."""
    import http.cookiejar
    import json

    # A DELETE needs the server's XSRF cookie echoed in a header, as the browser does.
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{url}/api/sessions", timeout=10) as r:
        sessions = json.load(r)
    opener.open(f"{url}/", timeout=30).close()  # the front page sets _xsrf
    xsrf = next((c.value for c in jar if c.name == "_xsrf"), "")
    for session in sessions:
        request = urllib.request.Request(
            f"{url}/api/sessions/{session['id']}", method="DELETE", headers={"X-XSRFToken": xsrf}
        )
        opener.open(request, timeout=30).close()


def accept_kernel_dialog(page) -> None:
    """Accept Lab's "Select Kernel" dialog (Python 3) if it is up.

    Lab 4.6 sometimes shows it for a notebook that names its kernel, even after starting
    that kernel; left open, it swallows every click.
    """
    accept = page.locator(".jp-Dialog:has-text('Select Kernel') .jp-mod-accept")
    if accept.count():
        accept.click()
        wait_kernel_idle(page)


def wait_kernel_idle(page, timeout: float = 60_000) -> None:
    # The kernel status lives in the toolbar: "Kernel status: Idle".
    page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status='idle']",
                           timeout=timeout)  # fmt: skip


def lab_menu(page, menu: str, item: str) -> None:
    """Click a main-menu item, e.g. ``lab_menu(page, "Run", "Run All Cells")``."""
    page.locator(".lm-MenuBar-itemLabel", has_text=menu).first.click()
    page.locator(".lm-Menu-itemLabel", has_text=item).first.click()


def run_all_cells(page, tries: int = 3) -> None:
    """Run > Run All Cells; retried when no cell started (a click can land before Lab is ready)."""
    prompts = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt")
    for _ in range(tries):
        accept_kernel_dialog(page)
        page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").first.click()
        page.keyboard.press("Escape")
        lab_menu(page, "Run", "Run All Cells")
        try:
            started = "els => els.some(e => /\\[[0-9*]+\\]/.test(e.textContent))"
            page.wait_for_function(started, arg=prompts.element_handles(), timeout=10_000)
            return
        except Exception:  # noqa: BLE001 - playwright's TimeoutError; try the menu again
            page.keyboard.press("Escape")
    raise TimeoutError("Run All Cells did not start any cell")


def start_code_in_new_cell(page, code: str):
    """Append a code cell at the end and start it; return the cell (do not wait for it)."""
    nb = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").first
    cells = nb.locator(".jp-Cell")
    cells.last.locator(".jp-InputArea-prompt").click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")  # insert below, command mode
    count = cells.count()
    page.keyboard.press("Enter")  # edit mode
    page.keyboard.insert_text(code)
    page.keyboard.press("Shift+Enter")
    return cells.nth(count - 1)


def run_code_in_new_cell(page, code: str, timeout: float = 60_000) -> str:
    """Append a code cell at the end, run it, and return its text output."""
    out = start_code_in_new_cell(page, code).locator(".jp-OutputArea-output")
    out.first.wait_for(timeout=timeout)
    wait_kernel_idle(page, timeout)
    return out.first.inner_text()


def write_notebook(path: Path, cells: list[str]) -> None:
    """A notebook of ``cells`` (code, no outputs) on the python3 kernel, at ``path``."""
    code = [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": c} for c in cells]
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.write_text(json.dumps({"cells": code, "metadata": {"kernelspec": kernel}, "nbformat": 4, "nbformat_minor": 5}))


# The editor on the page (getting_started.ipynb: the blur node's sigma slider).
EDITOR = ".oremda-editor"
SLIDER = "input[type=range][data-param='sigma']"
ROW = "[data-param-row='sigma']"
VALUE = "[data-param-value='sigma']"
ERROR = "[data-param-error='sigma']"
FRAME = "() => Number(document.querySelector(\"canvas[data-display='view']\")?.dataset.frame || 0)"


def value_is(page, text, timeout=30_000):
    """Wait until the sigma slider shows ``text``."""
    page.wait_for_function(f"() => document.querySelector(\"{VALUE}\")?.textContent === '{text}'", timeout=timeout)
