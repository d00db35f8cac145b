"""docs/operators.md covers every operator, port and parameter (guards against drift)."""

import re
from pathlib import Path

import pytest
from test_library import UPSTREAM

from oremda_lab.registry import default_registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "operators.md"


@pytest.mark.parametrize("name", sorted(UPSTREAM))
def test_documented(name):
    text = DOC.read_text()
    match = re.search(rf"^### `{name}`\n(.*?)(?=^### |\Z)", text, re.S | re.M)
    assert match, f"{name} has no section in docs/operators.md"
    section = match.group(1)
    spec = default_registry().get(name)
    for item in [*spec.inputs, *spec.outputs, *spec.params]:
        assert f"`{item}`" in section, f"{name}: {item} is not documented"
