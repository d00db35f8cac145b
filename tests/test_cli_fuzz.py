"""Fuzzing the command line: hostile pipeline JSON and parameter values.

Whatever the document, ``oremda-lab validate`` and ``run`` end with an exit status and
at most one error line (plus one line per node error), never a traceback or a hang, and
nothing is written outside ``--out`` (display PNGs named after node ids).
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cli import PIPELINE  # the tiff -> blur -> picture -> view pipeline the CLI tests run

from oremda_lab.cli import main

# Strings an attacker or a typo would try: paths, NUL, control characters, long runs.
nasty_text = st.one_of(
    st.sampled_from(["../../x", "/etc/passwd", "..", ".", "a\0b", "/dev/zero", "fifo", "sub", "a.tif", "", "\n"]),
    st.text(max_size=12),
    st.text(alphabet="./\\\0x", max_size=300),
)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([2.0, 0, -1, 2**63, 1e308]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, nasty_text)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(nasty_text, inner, max_size=3)),
    max_leaves=8,
)


def _paths(value, prefix=()):
    """Every path (tuple of keys and indices) into a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _paths(child, (*prefix, i))


@st.composite
def hostile_documents(draw):
    """The valid pipeline with a few parts replaced, removed or nested deeply."""
    doc = json.loads(json.dumps(PIPELINE))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "deepen"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "deepen":
            deep = draw(st.integers(50, 5000))
            parent[path[-1]] = json.loads("[" * deep + "]" * deep) if deep < 900 else "[" * deep
        else:
            parent[path[-1]] = draw(json_values)
    nodes, edges = doc.get("nodes"), doc.get("edges")
    if isinstance(nodes, list) and isinstance(edges, list) and draw(st.booleans()):  # a display id that is a path
        node_id = draw(nasty_text)
        nodes.append({"id": node_id, "type": "display", "display": "2D"})
        edges.append({"from": {"id": "pic", "port": "out"}, "to": {"id": node_id, "port": "in"}})
    return doc


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    data = root / "data"
    data.mkdir()
    tifffile.imwrite(data / "a.tif", np.arange(64, dtype=np.float32).reshape(8, 8))
    os.mkfifo(data / "fifo")
    (data / "sub").mkdir()
    return root


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if not p.is_dir() or p.is_symlink()}


def _options(workspace: Path) -> list[str]:
    return ["--data", str(workspace / "data"), "--out", str(workspace / "out"), "--runtime", "inline", "--quiet"]


def _check(capsys, argv, out: Path | None = None) -> int:
    code = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "internal error" not in captured.err, captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("oremda-lab: error")]
    assert len(errors) <= 1 and (errors or code in (0, 1)), captured.err
    assert code in (0, 1, 2), code
    if out is not None and out.exists():
        assert all(p.parent == out and p.suffix == ".png" for p in _files(out)), sorted(_files(out))
    return code


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=hostile_documents())
def test_validate_never_crashes(workspace, capsys, doc):
    path = workspace / "p.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    _check(capsys, ["validate", str(path)])


@pytest.mark.timeout(600)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=hostile_documents())
def test_run_never_crashes_nor_writes_outside_out(workspace, capsys, doc):
    path, out = workspace / "p.json", workspace / "out"
    path.write_text(json.dumps(doc))
    before = _files(workspace) - _files(out)
    _check(capsys, ["run", str(path), *_options(workspace)], out)
    assert _files(workspace) - _files(out) == before


@pytest.mark.timeout(600)
# A hostile title may hold characters the display's font lacks: matplotlib draws boxes and says so.
@pytest.mark.filterwarnings("ignore:Glyph .* missing from font:UserWarning")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    target=st.sampled_from(["src.filename", "blur.sigma", "pic.normalize", "view.title", "blur.nope"]),
    value=json_values,
)
def test_hostile_parameter_values_are_one_line(workspace, capsys, target, value):
    path, out = workspace / "p.json", workspace / "out"
    path.write_text(json.dumps(PIPELINE))
    assignment = f"{target}={json.dumps(value)}"
    _check(capsys, ["run", str(path), *_options(workspace), "--set", assignment], out)
