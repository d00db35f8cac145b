"""Browser tier: real JupyterLab 4 and Notebook 7 servers and headless Chromium (marker ``browser``).

Every test that takes the ``front`` fixture runs twice, once per front end; each front
end's server is started once per session (pytest runs all tests of one front end, stops
its server, then starts the next).
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from lab import ARTIFACTS, CHROMIUM, ROOT, chromium_page, jupyter_lab, open_notebook, stop_kernels

FRONT_ENDS = ("lab", "notebook")


def pytest_collection_modifyitems(items):
    # The hook sees every collected test of the session: mark only this folder's.
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.browser)


@dataclass(frozen=True)
class Front:
    """One running front end: ``app`` is ``lab`` (JupyterLab 4) or ``notebook`` (Notebook 7)."""

    app: str
    url: str
    root: Path  # the server's root folder (a copy of notebooks/ is in it)

    def open(self, page, path: str) -> None:
        """Open the notebook at ``path`` (relative to the root) and wait for its kernel."""
        open_notebook(page, self.url, path, app=self.app)

    def shot(self, page, name: str, editor=None) -> None:
        """Screenshot of ``editor`` (default: the first) into tests/browser/artifacts/APP-NAME.png."""
        ARTIFACTS.mkdir(exist_ok=True)
        editor = editor or page.locator(".oremda-editor").first
        editor.screenshot(path=str(ARTIFACTS / f"{self.app}-{name}.png"))


@pytest.fixture(scope="session", params=FRONT_ENDS)
def front(request, tmp_path_factory):
    """A JupyterLab 4 or Notebook 7 server on a copy of notebooks/ (no token, loopback)."""
    if not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    pytest.importorskip("playwright")
    pytest.importorskip("jupyterlab" if request.param == "lab" else "notebook")
    # Serve copies: the servers autosave and write checkpoints, and the repository's
    # notebooks must stay as committed (without outputs).
    root = tmp_path_factory.mktemp(request.param)
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    with jupyter_lab(root, app=request.param) as url:  # stock servers, as users have them
        yield Front(request.param, url, root)


@pytest.fixture
def page(request):
    """A Chromium page; afterwards its screenshot and console go to artifacts, and the test's kernels stop."""
    with chromium_page() as page:
        messages = []
        page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
        yield page
        ARTIFACTS.mkdir(exist_ok=True)
        name = request.node.name.replace("[", "-").replace("]", "")
        page.screenshot(path=str(ARTIFACTS / f"last-{name}.png"), full_page=True)
        (ARTIFACTS / f"console-{name}.log").write_text("\n".join(messages))
    if "front" in request.fixturenames:  # the next test starts without this one's kernels and workers
        stop_kernels(request.getfixturevalue("front").url)
