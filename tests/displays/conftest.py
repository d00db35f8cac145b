"""The operator tests' real-data fixtures (MoS2), shared with the display tests."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "operator_fixtures", Path(__file__).parents[1] / "operators" / "conftest.py"
)
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)
mos2_dm3, mos2_image = _fixtures.mos2_dm3, _fixtures.mos2_image
