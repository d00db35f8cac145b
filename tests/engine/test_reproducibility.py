"""Reproducing a run from its export, in a fresh process, through the command line.

``oremda-lab run --record`` writes the run record; its ``pipeline`` is the export
(``Run.export_pipeline()``: the pipeline plus provenance pinning operator digests and
input file hashes) and its ``outputs`` identify every output's bytes. Re-running the
export in a new process must give bit-identical outputs; a changed operator or input
file must be refused before anything runs, naming the node and what changed.
"""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from oremda_lab import Engine, Pipeline
from oremda_lab.registry import Registry
from oremda_lab.testing import FAULT_OPERATORS

PIPELINE = {
    "nodes": [
        {"id": "reader", "image": "oremda/npy_reader", "params": {"filename": "x.npy"}},
        {"id": "plus1", "image": "oremda/fault", "params": {}},
        {"id": "blur", "image": "oremda/gaussian_blur", "params": {"sigma": 1.5}},
    ],
    "edges": [
        {"type": "data", "from": {"id": "reader", "port": "data"}, "to": {"id": "plus1", "port": "in"}},
        {"type": "data", "from": {"id": "plus1", "port": "out"}, "to": {"id": "blur", "port": "image"}},
    ],
}


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """A data folder with ``x.npy``, a copy of the fault operator on the operator path, the pipeline file."""
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "x.npy", np.random.default_rng(7).random((48, 40)))
    operators = tmp_path / "operators"
    shutil.copytree(FAULT_OPERATORS / "fault", operators / "fault")
    monkeypatch.setenv("OREMDA_OPERATORS_PATH", str(operators))
    pipeline = tmp_path / "pipeline.json"
    pipeline.write_text(json.dumps(PIPELINE))
    return data, operators / "fault", pipeline


def cli(pipeline: Path, data: Path, record: Path) -> subprocess.CompletedProcess:
    """``oremda-lab run`` in its own process (nothing shared with this one or an earlier run)."""
    return subprocess.run(
        [sys.executable, "-m", "oremda_lab.cli", "run", str(pipeline), "--data", str(data), "--quiet"]
        + ["--record", str(record), "--out", str(record.with_suffix(".out"))],
        capture_output=True,
        text=True,
        timeout=300,
    )


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def test_an_export_reruns_bit_identical_in_a_fresh_process(setup, tmp_path):
    data, fault, pipeline = setup
    first = cli(pipeline, data, tmp_path / "first.json")
    assert first.returncode == 0, first.stderr
    record = json.loads((tmp_path / "first.json").read_text())
    exported = tmp_path / "exported.json"
    exported.write_text(json.dumps(record["pipeline"]))
    assert record["pipeline"]["provenance"]["inputs"] == {"reader.filename": "sha256:" + sha256_file(data / "x.npy")}

    again = cli(exported, data, tmp_path / "again.json")
    assert again.returncode == 0, again.stderr
    rerun = json.loads((tmp_path / "again.json").read_text())
    assert {n: r["status"] for n, r in rerun["nodes"].items()} == dict.fromkeys(("reader", "plus1", "blur"), "done")
    assert rerun["outputs"] == record["outputs"]
    # What the digests stand for, computed here: the file's array plus one, then the blur.
    x = np.load(data / "x.npy")
    assert rerun["outputs"]["plus1"]["out"] == {"dtype": "<f8", "shape": [48, 40], "sha256": sha256(x + 1)}
    # The blur: the same bytes from this process on the inline runtime, and the values of
    # scipy's filter (the operator may use a faster kernel, equal within float rounding).
    with Engine("inline", data, registry=Registry([fault.parent])) as engine:
        run = engine.run(Pipeline.load(pipeline, catalog=engine.registry))
        assert run.ok, run.errors
        here = run.outputs["blur"]["image"].data
        assert rerun["outputs"]["blur"]["image"] == {"dtype": here.dtype.str, "shape": [48, 40], "sha256": sha256(here)}
        np.testing.assert_allclose(here, ndimage.gaussian_filter(x + 1, 1.5), rtol=1e-6)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_changed_input_file_is_refused_before_running(setup, tmp_path):
    data, _, pipeline = setup
    assert cli(pipeline, data, tmp_path / "first.json").returncode == 0
    exported = tmp_path / "exported.json"
    exported.write_text(json.dumps(json.loads((tmp_path / "first.json").read_text())["pipeline"]))
    np.save(data / "x.npy", np.zeros((48, 40)))  # same name, other bytes

    refused = cli(exported, data, tmp_path / "again.json")
    assert refused.returncode == 2
    (line,) = refused.stderr.splitlines()
    assert line.startswith("oremda-lab: error: reader: input filename='x.npy' changed since this pipeline was exported")
    assert f"it is sha256:{sha256_file(data / 'x.npy')}" in line
    assert not (tmp_path / "again.json").exists() and not (tmp_path / "again.out").exists()  # nothing ran


def test_a_changed_operator_is_refused_before_running(setup, tmp_path):
    data, fault, pipeline = setup
    assert cli(pipeline, data, tmp_path / "first.json").returncode == 0
    exported = tmp_path / "exported.json"
    exported.write_text(json.dumps(json.loads((tmp_path / "first.json").read_text())["pipeline"]))
    with open(fault / "run.py", "a") as code:
        code.write("\n# edited after the export\n")

    refused = cli(exported, data, tmp_path / "again.json")
    assert refused.returncode == 2
    (line,) = refused.stderr.splitlines()
    assert line.startswith("oremda-lab: error: plus1: pinned to fault sha256:")
    assert not (tmp_path / "again.json").exists() and not (tmp_path / "again.out").exists()
