import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from oremda_lab import cli
from oremda_lab.cli import UserError, _display_path, main
from oremda_lab.registry import default_registry
from oremda_lab.testing import FAULT_OPERATORS, gated_displays

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


def test_a_partial_graph_runs_its_runnable_part_and_exits_1(workspace, capsys):
    # A blur dropped in but not wired yet, feeding a second display: the rest runs.
    doc = json.loads(json.dumps(PIPELINE))
    doc["nodes"] += [
        {"id": "blur2", "image": "oremda/gaussian_blur"},
        {"id": "pic2", "image": "oremda/picture"},
        {"id": "view2", "type": "display", "display": "2D"},
    ]
    doc["edges"] += [
        {"type": "data", "from": {"id": "blur2", "port": "image"}, "to": {"id": "pic2", "port": "in"}},
        {"type": "display", "from": {"id": "pic2", "port": "out"}, "to": {"id": "view2", "port": "in"}},
    ]
    (workspace / "partial.json").write_text(json.dumps(doc))
    out_dir = workspace / "out"
    args = ["run", str(workspace / "partial.json"), "--data", str(workspace), "--out", str(out_dir)]
    code = main([*args, "--runtime", "inline", "--record", str(workspace / "record.json")])
    out, err = capsys.readouterr()
    assert code == 1
    assert err.splitlines() == [
        "oremda-lab: node blur2 did not run: waiting for input: image",
        "oremda-lab: node pic2 did not run: waiting for upstream: blur2",
        "oremda-lab: node view2 did not run: waiting for upstream: pic2",
    ]
    assert "blur2: waiting: waiting for input: image" in out and "incomplete in" in out
    assert sorted(p.name for p in out_dir.iterdir()) == ["view.png"]
    nodes = json.loads((workspace / "record.json").read_text())["nodes"]
    assert {n: r["status"] for n, r in nodes.items()} == {
        "src": "done", "blur": "done", "pic": "done", "view": "done", "blur2": "waiting", "pic2": "waiting",
        "view2": "waiting",
    }  # fmt: skip
    assert nodes["blur2"]["message"] == "waiting for input: image"


def test_each_display_png_is_written_as_soon_as_its_producers_are_done(tmp_path, capsys, monkeypatch, request):
    # The slow branch waits for a gate that opens only when a PNG has been written:
    # fast.png must be on disk within the run, before the slow branch is done.
    monkeypatch.setenv("OREMDA_OPERATORS_PATH", str(FAULT_OPERATORS))
    default_registry.cache_clear()  # the default registry reads the variable when it is made
    request.addfinalizer(default_registry.cache_clear)
    (tmp_path / "p.json").write_text(json.dumps(gated_displays(seconds=60).to_json()))
    write = cli.to_png

    def written(display, layers, path):
        path = write(display, layers, path)
        (tmp_path / "gate").touch()
        return path

    monkeypatch.setattr(cli, "to_png", written)
    out_dir, record = tmp_path / "out", tmp_path / "record.json"
    args = ["run", str(tmp_path / "p.json"), "--data", str(tmp_path), "--out", str(out_dir), "--record", str(record)]
    code = main([*args, "--runtime", "inline"])
    lines = [line.split("] ", 1)[-1] for line in capsys.readouterr().out.splitlines()]  # without the clock
    assert code == 0, lines

    def at(start):
        return next(i for i, line in enumerate(lines) if line.startswith(start))

    assert at(f"wrote {out_dir.resolve() / 'fast.png'}") < at("s: done") < at("slow: done")
    assert at("slow: done") < at(f"wrote {out_dir.resolve() / 'slow.png'}") < at("ok in")
    assert sorted(p.name for p in out_dir.iterdir()) == ["fast.png", "slow.png"]
    nodes = json.loads(record.read_text())["nodes"]
    assert {n: r["status"] for n, r in nodes.items()} == dict.fromkeys(
        ["f", "fast_plot", "fast", "s", "slow_plot", "slow"], "done"
    )


def test_operators_lists_ports_and_params(capsys):
    assert main(["operators"]) == 0
    out = capsys.readouterr().out
    assert "gaussian_blur" in out and "param sigma: number [0..50] px = 2.0" in out
    assert main(["operators", "--json"]) == 0
    assert any(op["name"] == "crop2d" for op in json.loads(capsys.readouterr().out))


# -- hostile inputs: one line and an exit status, never a traceback or a hang --------------


def run_cli(capsys, *args):
    """``main(args)`` in-process: its exit status and stderr (asserted to be one clean line)."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert "Traceback" not in captured.err and "internal error" not in captured.err, captured.err
    return code, captured.out, lines


def chain(length):
    nodes = [{"id": f"b{i}", "image": "oremda/gaussian_blur", "params": {}} for i in range(length)]
    nodes.insert(0, {"id": "src", "image": "oremda/tiff_reader", "params": {"filename": "a.tif"}})
    ids = [n["id"] for n in nodes]
    edges = [
        {"from": {"id": a, "port": "out" if a == "src" else "image"}, "to": {"id": b, "port": "image"}}
        for a, b in zip(ids, ids[1:], strict=False)
    ]
    return {"nodes": nodes, "edges": edges}


def with_node(**changes):
    doc = json.loads(json.dumps(PIPELINE))
    for key, value in changes.items():
        node_id, _, field = key.partition("__")
        node = next(n for n in doc["nodes"] if n["id"] == node_id)
        if field.startswith("param_"):
            node["params"][field[6:]] = value
        else:
            node[field] = value
    return doc


@pytest.mark.parametrize(
    "doc, message",
    [
        (with_node(view__id="../../x"), "a node id cannot contain a path separator"),
        (with_node(view__id="/tmp/x"), "a node id cannot contain a path separator"),
        (with_node(view__id=".."), "'..' is not a node id"),
        (with_node(view__id="a\0b"), "a node id cannot contain NUL"),
        (with_node(view__id="v" * 500), "a node id is at most 128 characters"),
        (with_node(blur__image=5), "'image' must be a string"),
        (with_node(blur__position="here"), "'position' must be an object"),
        (with_node(blur__param_sigma=10**400), "<1329-bit integer> is too large"),
        (with_node(blur__param_sigma=float("inf")), "inf is not a finite number"),
        (with_node(src__param_filename="a\0.tif"), "a file name cannot contain a NUL character"),
        (dict(PIPELINE, provenance="exported"), "provenance: must be an object"),
        (dict(PIPELINE, provenance={"operators": {"blur": 1}}), "provenance.operators: must map"),
        (dict(PIPELINE, provenance={"nodes": {"blur": {"digest": 5}}}), "provenance.nodes: a digest must be a string"),
        (dict(PIPELINE, deep=json.loads("[" * 100 + "]" * 100)), "nested deeper than 64 levels"),
        ("[" * 100_000 + "]" * 100_000, "nested deeper than 64 levels"),
        (chain(1500), "valid (1501 nodes, 1500 edges)"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 60 else None,
)
def test_hostile_pipelines_give_one_line(workspace, capsys, doc, message):
    path = workspace / "hostile.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    code, out, err = run_cli(capsys, "validate", path)
    assert message in out + "\n".join(err)
    if code == 0:
        return
    code, out, err = run_cli(capsys, "run", path, "--data", workspace, "--out", workspace / "out", "--runtime=inline")
    assert not any(ord(c) < 32 for c in out.replace("\n", "") + "".join(err))  # bad ids are printed quoted
    # A document that cannot run at all: one error line, status 2. A node's own problem: that
    # node's one error line, the rest of the graph runs, status 1 (docs/pipelines.md, partial graphs).
    assert message.split(":")[0] in "\n".join(err), err
    if code == 2:
        assert len(err) == 1
    else:
        assert code == 1 and all(line.startswith("oremda-lab: node ") for line in err), err
    assert not (workspace.parent / "x.png").exists()


@pytest.mark.parametrize("timeout", ["nan", "inf", "0", "-1"])
def test_timeouts_must_be_positive_and_finite(workspace, capsys, timeout):
    args = ("run", workspace / "p.json", "--data", workspace, "--out", workspace / "out", "--runtime", "inline")
    code, _, err = run_cli(capsys, *args, f"--timeout={timeout}")
    assert code == 2 and err == [
        f"oremda-lab: error: timeout must be a positive number of seconds, not {float(timeout)}"
    ]


def test_a_display_path_stays_in_the_out_folder(tmp_path):
    assert _display_path(tmp_path, "view") == tmp_path.resolve() / "view.png"
    for node_id in ("../x", "/etc/x", "a/../../x"):
        with pytest.raises(UserError, match="would write outside"):
            _display_path(tmp_path, node_id)


def special_files(folder):
    """File parameter values that must fail as one node error, never hang or be hashed."""
    os.mkfifo(folder / "fifo")
    (folder / "zero").symlink_to("/dev/zero")
    (folder / "sub").mkdir()
    outside = folder.parent / f"{folder.name}-outside.tif"
    outside.write_bytes((folder / "a.tif").read_bytes())
    return {
        "/dev/zero": "outside the data folder",
        "fifo": "is not a regular file",
        "zero": "outside the data folder",
        "sub": "is not a regular file",
        f"../{outside.name}": "outside the data folder",
        str(outside): "outside the data folder",
    }


@pytest.mark.timeout(120)
def test_special_files_are_node_errors_and_never_hashed(workspace, capsys):
    record = workspace / "record.json"
    for filename, message in special_files(workspace).items():
        args = ("run", workspace / "p.json", "--data", workspace, "--out", workspace / "out", "--runtime", "inline")
        code, _, err = run_cli(capsys, *args, "--set", f"src.filename={filename}", "--record", record)
        assert code == 1 and err[0].startswith("oremda-lab: node src failed") and message in err[0], (filename, err)
        assert json.loads(record.read_text())["provenance"]["inputs"] == {}, filename


def test_a_reader_that_leaves_early_is_not_an_error():
    """`oremda-lab operators | head` must not end in 'Broken pipe'."""
    read, write = os.pipe()
    os.close(read)  # every write now fails with EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "-m", "oremda_lab.cli", "operators"], stdout=write, stderr=subprocess.PIPE, text=True
        )
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (0, "")
