"""Browser tier: a real JupyterLab and headless Chromium (marker ``browser``)."""

import shutil
from pathlib import Path

import pytest
from lab import ARTIFACTS, CHROMIUM, ROOT, chromium_page, jupyter_lab


def pytest_collection_modifyitems(items):
    # The hook sees every collected test of the session: mark only this folder's.
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def lab_url(tmp_path_factory):
    if not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    pytest.importorskip("playwright")
    # Serve copies: Lab autosaves and writes checkpoints, and the repository's notebooks
    # must stay as committed (without outputs).
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    with jupyter_lab(root) as url:  # a stock server, as users have it
        yield url


@pytest.fixture(scope="session")
def notebook_url(tmp_path_factory):
    """A Jupyter Notebook 7 server (``pip install notebook``) on a copy of notebooks/."""
    if not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    pytest.importorskip("playwright")
    pytest.importorskip("notebook")
    root = tmp_path_factory.mktemp("nb7")
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    with jupyter_lab(root, app="notebook") as url:
        yield url


@pytest.fixture
def page():
    with chromium_page() as page:
        messages = []
        page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
        yield page
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "last.png"), full_page=True)
        (ARTIFACTS / "console.log").write_text("\n".join(messages))
