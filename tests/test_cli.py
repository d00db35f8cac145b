import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from oremda_lab.cli import main

PIPELINE = {
    "nodes": [
        {"id": "src", "image": "oremda/tiff_reader", "params": {"filename": "a.tif"}},
        {"id": "blur", "image": "oremda/gaussian_blur", "params": {"sigma": 2}},
        {"id": "pic", "image": "oremda/picture", "params": {}},
        {"id": "view", "type": "display", "display": "2D", "params": {}},
    ],
    "edges": [
        {"type": "data", "from": {"id": "src", "port": "out"}, "to": {"id": "blur", "port": "image"}},
        {"type": "data", "from": {"id": "blur", "port": "image"}, "to": {"id": "pic", "port": "in"}},
        {"type": "display", "from": {"id": "pic", "port": "out"}, "to": {"id": "view", "port": "in"}},
    ],
}


@pytest.fixture
def workspace(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.random.default_rng(0).random((64, 64), dtype=np.float32))
    (tmp_path / "p.json").write_text(json.dumps(PIPELINE))
    return tmp_path


def test_run_writes_pngs_and_a_record(workspace, capsys):
    code = main(
        [
            "run", str(workspace / "p.json"), "--data", str(workspace), "--out", str(workspace / "out"),
            "--runtime", "inline", "--set", "blur.sigma=[1, 3]", "--record", str(workspace / "record.json"),
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert (workspace / "out" / "view.png").read_bytes()[:4] == b"\x89PNG"
    assert "blur: done" in out and "ok in" in out
    record = json.loads((workspace / "record.json").read_text())
    assert record["nodes"]["blur"]["status"] == "done"
    assert record["pipeline"]["nodes"][1]["params"]["sigma"] == [1, 3]
    assert record["provenance"]["inputs"]["src.filename"].startswith("sha256:")


def test_validate_lists_problems(workspace, capsys):
    bad = dict(PIPELINE, edges=PIPELINE["edges"][1:])
    (workspace / "bad.json").write_text(json.dumps(bad))
    assert main(["validate", str(workspace / "p.json")]) == 0
    assert main(["validate", str(workspace / "bad.json")]) == 1
    assert "blur.image: required input is not connected" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "missing.json"], "cannot read missing.json"),
        (["run", "{p}", "--set", "blur.sigma=-4"], "blur.sigma: -4 is below the minimum 0"),
        (["run", "{p}", "--set", "blursigma=1"], "--set expects NODE.PARAM=VALUE"),
        (["run", "{p}", "--set", "ghost.sigma=1"], "ghost: no such node"),
        (["run", "{p}", "--data", "/nonexistent-folder"], "data folder /nonexistent-folder does not exist"),
    ],
)
def test_user_errors_are_one_line_without_traceback(workspace, args, message):
    args = [a.replace("{p}", str(workspace / "p.json")) for a in args]
    done = subprocess.run(
        [sys.executable, "-m", "oremda_lab.cli", *args], capture_output=True, text=True, cwd=workspace
    )
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_failed_node_exits_non_zero_with_its_error(workspace, capsys):
    (workspace / "a.tif").write_bytes(b"not a tiff")
    code = main(
        [
            "run",
            str(workspace / "p.json"),
            "--data",
            str(workspace),
            "--out",
            str(workspace / "o"),
            "--runtime",
            "inline",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "node src failed" in err


def test_operators_lists_ports_and_params(capsys):
    assert main(["operators"]) == 0
    out = capsys.readouterr().out
    assert "gaussian_blur" in out and "param sigma: number [0..50] px = 2.0" in out
    assert main(["operators", "--json"]) == 0
    assert any(op["name"] == "crop2d" for op in json.loads(capsys.readouterr().out))
