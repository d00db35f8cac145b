"""Widget tests run without a browser: a recording comm stands in for the front end."""

import pytest
from widget_helpers import RecordingComm


@pytest.fixture
def comm() -> RecordingComm:
    return RecordingComm()
