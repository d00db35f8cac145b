"""Widget tests run without a browser: a recording comm stands in for the front end.

The server extension's tests start real Jupyter servers with the browser tier's
``lab.jupyter_lab`` (``app="server"``: no browser involved).
"""

import sys
from pathlib import Path

import pytest
from widget_helpers import RecordingComm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "browser"))


@pytest.fixture
def comm() -> RecordingComm:
    return RecordingComm()
