"""Per-operator environments: the kernel-or-venv rule, locks, venvs the local runtime runs.

The venv tests need uv and (the first time) the package index; they keep their
environments in the shared cache (``~/.cache/oremda-lab``) so later runs reuse them,
except the tests about creation itself, which use a fresh cache folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from oremda_lab.engine import Engine
from oremda_lab.registry import Registry
from oremda_lab.runtime import environments
from oremda_lab.runtime.environments import EnvironmentFailure, ensure_environment, kernel_satisfies, lock
from oremda_lab.spec.operator import OperatorSpec
from oremda_lab.spec.pipeline import Pipeline
from oremda_lab.testing import FAULT_OPERATORS, RuntimeContract, write_operator

pytestmark = pytest.mark.skipif(shutil.which("uv") is None and not importlib.util.find_spec("uv"), reason="needs uv")

KERNEL_NUMPY = importlib.metadata.version("numpy")
OLD_STACK = ["numpy==1.26.4", "pyarrow==15.0.2"]  # what py4DSTEM-era stacks pin

# Reports the numpy it imported and doubles its input (or emits 0..n-1): the truth is 2**k * arange.
VERSION_CODE = """
import numpy as np
from oremda_lab.worker.sdk import PortValue, operator

@operator
def run(inputs, params):
    given = inputs.get("in")
    data = np.arange(params["n"], dtype=np.float64) if given is None else np.asarray(given.data) * 2
    return {"out": PortValue(data, {"numpy": np.__version__})}
"""


def version_operator(folder: Path, name: str, requirements: list[str], python: str | None = None) -> Path:
    description = {
        "name": name,
        "version": "1.0.0",
        "entrypoint": "run:run",
        "requirements": requirements,
        **({"python": python} if python else {}),
        "ports": {"input": {"in": {"type": "data", "required": False}}, "output": {"out": {"type": "data"}}},
        "params": {"n": {"type": "integer", "default": 5}},
    }
    return write_operator(folder, description, VERSION_CODE)


def chain(registry: Registry, *names: str) -> Pipeline:
    pipeline = Pipeline(catalog=registry)
    for i, name in enumerate(names):
        pipeline.add_node(f"oremda/{name}", id=f"n{i}")
        if i:
            pipeline.connect(f"n{i - 1}", "out", f"n{i}", "in")
    return pipeline


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> Path:
    """An empty environment cache (uv's own wheel cache still makes creation quick)."""
    monkeypatch.setenv(environments.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


# -- the rule -------------------------------------------------------------------------


def test_kernel_runs_what_it_satisfies():
    major = int(KERNEL_NUMPY.split(".")[0])
    assert kernel_satisfies([])
    assert kernel_satisfies([f"numpy=={KERNEL_NUMPY}", "pyarrow"])
    assert kernel_satisfies([f"numpy>={major}", "scipy; python_version < '3'"])  # a marker that does not apply
    assert not kernel_satisfies([f"numpy<{major}"])
    assert not kernel_satisfies(["surely-not-an-installed-package-xyz"])
    assert not kernel_satisfies(["numpy @ https://example.org/numpy.whl"])  # one exact build: a venv
    major_minor = ".".join(platform.python_version_tuple()[:2])
    assert kernel_satisfies([], python=major_minor) and kernel_satisfies([], python=f">={major_minor}")
    assert not kernel_satisfies([], python="3.1")  # not 3.11 by prefix


def test_extras_count_in_the_rule(tmp_path, monkeypatch):
    # an installed distribution whose extra "more" needs a package that is not installed
    info = tmp_path / "fakepkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n"
        'Requires-Dist: numpy; extra == "fine"\nRequires-Dist: surely-not-installed-xyz; extra == "more"\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert kernel_satisfies(["fakepkg", "fakepkg[fine]", "fakepkg==1.0"])
    assert not kernel_satisfies(["fakepkg[more]"])
    assert not kernel_satisfies(["fakepkg>=2"])


def test_kernel_environment_for_a_satisfied_operator():
    spec = OperatorSpec.from_dict({"name": "plain", "requirements": ["numpy"]})
    assert ensure_environment(spec).id == "kernel"


# -- locks ---------------------------------------------------------------------------


def test_lock_pins_core_and_resolves_offline_once_known(fresh_cache, monkeypatch):
    first = lock(["numpy<2"])
    pins = dict(line.split("==") for line in first.lines)
    assert pins["numpy"].startswith("1.") and "pyarrow" in pins  # the worker core is always in
    monkeypatch.setenv("UV_OFFLINE", "1")
    monkeypatch.setenv("UV_INDEX_URL", "http://127.0.0.1:9/simple")
    again = lock(["numpy<2"])
    assert again == first and again.key == first.key
    with pytest.raises(EnvironmentFailure):
        lock(["numpy<1.25"])  # a new set cannot resolve offline


def test_worker_files_hold_only_the_worker_half():
    files = environments.worker_files()
    assert files["__init__.py"].decode().startswith('"""oremda-lab worker side')
    assert "worker/main.py" in files and "worker/forkserver.py" in files and "dataplane/arena.py" in files
    assert not [f for f in files if f.startswith(("engine/", "widget/", "runtime/", "cli"))]


# -- venvs through the local runtime -----------------------------------------------------


def test_env_created_once_with_progress_then_reused_offline(fresh_cache, tmp_path, monkeypatch):
    registry = Registry([version_operator(tmp_path / "ops", "old_numpy", ["numpy<2"]).parent], builtin=False)
    pipeline = chain(registry, "old_numpy")
    events = []
    with Engine("local", tmp_path, registry=registry) as engine:
        engine.subscribe(events.append)
        run = engine.run(pipeline)
    assert run.ok, run.errors
    preparing = [e.message for e in events if e.state == "preparing" and e.node == "n0"]
    assert preparing[0].startswith("resolving") and preparing[1].startswith("creating environment for old_numpy")
    assert preparing[2].startswith("installed in") and preparing[3].startswith("starting the first worker")
    envs = [p for p in (fresh_cache / "envs").iterdir() if p.is_dir()]
    assert len(envs) == 1 and (envs[0] / environments.MARKER).exists()

    # Cached: a new engine, with no index reachable, runs it without preparing anything.
    monkeypatch.setenv("UV_OFFLINE", "1")
    monkeypatch.setenv("UV_INDEX_URL", "http://127.0.0.1:9/simple")
    events.clear()
    with Engine("local", tmp_path, registry=registry) as engine:
        engine.subscribe(events.append)
        again = engine.run(pipeline)
        assert again.ok, again.errors
        np.testing.assert_array_equal(again.outputs["n0"]["out"].data, np.arange(5.0))
    assert not [e for e in events if e.state == "preparing"]
    assert again.provenance["nodes"]["n0"]["environment"]["id"] == f"venv:{envs[0].name}"


def test_two_engines_racing_build_one_environment(fresh_cache):
    spec = OperatorSpec.from_dict({"name": "raced", "requirements": ["numpy<2"]})
    lock(spec.requirements)  # resolved already: both go straight for the build
    start, heard = threading.Barrier(2), []

    def make() -> environments.Environment:
        start.wait()
        return ensure_environment(spec, heard.append)

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: make(), range(2))
    assert first == second and first.kind == "venv"
    assert [m for m in heard if m.startswith("creating")] == ["creating environment for raced (2 packages) ..."]
    assert [p.name for p in (fresh_cache / "envs").iterdir() if p.is_dir()] == [first.key]  # no temporary left


def test_an_environment_whose_python_is_gone_is_made_again(fresh_cache, tmp_path):
    spec = OperatorSpec.from_dict({"name": "orphan", "requirements": ["numpy<2"]})
    python = Path(ensure_environment(spec).python)
    python.unlink()  # as when the base interpreter it linked to was uninstalled
    python.symlink_to(tmp_path / "no-such-python")
    heard = []
    again = ensure_environment(spec, heard.append)
    assert Path(again.python).exists() and any(m.startswith("creating") for m in heard)


def test_cli_prints_the_preparation(fresh_cache, tmp_path):
    version_operator(tmp_path / "ops", "old_numpy", ["numpy<2"])
    (tmp_path / "p.json").write_text(json.dumps({"nodes": [{"id": "n0", "image": "oremda/old_numpy"}], "edges": []}))
    # A process of its own: the operator folder reaches it through the environment.
    env = {**os.environ, "OREMDA_OPERATORS_PATH": str(tmp_path / "ops"), environments.CACHE_ENV: str(fresh_cache)}
    command = [sys.executable, "-m", "oremda_lab.cli", "run", "p.json", "--data", ".", "--out", "out"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "n0: preparing: creating environment for old_numpy" in done.stdout
    assert "n0: preparing: installed in" in done.stdout


def test_an_operator_python_gets_that_interpreter(tmp_path, monkeypatch):
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS", "never")  # only what this machine has
    wanted = f">=3.11,!={platform.python_version()}"
    try:
        _, version = environments.interpreter(wanted)
    except EnvironmentFailure:
        pytest.skip("no other Python >= 3.11 on this machine")
    registry = Registry([version_operator(tmp_path / "ops", "other_python", [], python=wanted).parent], builtin=False)
    with Engine("local", tmp_path, registry=registry) as engine:
        run = engine.run(chain(registry, "other_python"))
        assert run.ok, run.errors
        np.testing.assert_array_equal(run.outputs["n0"]["out"].data, np.arange(5.0))
    env = run.provenance["nodes"]["n0"]["environment"]
    assert env["id"].startswith("venv:") and env["python"] == version != platform.python_version()


def test_failure_names_the_requirement_and_spares_other_branches(tmp_path):
    ops = tmp_path / "ops"
    version_operator(ops, "impossible", ["numpy==0.0.1"])
    version_operator(ops, "fine", [])
    registry = Registry([ops], builtin=False)
    pipeline = chain(registry, "impossible", "fine")
    pipeline.add_node("oremda/fine", id="other")
    with Engine("local", tmp_path, registry=registry) as engine:
        run = engine.run(pipeline)
    message = run.nodes["n0"].error["message"]
    assert message.startswith("could not create the environment of impossible: requirement 'numpy==0.0.1'")
    assert "numpy==0.0.1" in message.split("cannot be installed:")[1]  # uv's own line follows
    assert run.nodes["n1"].status == "skipped" and run.nodes["other"].status == "done"


def test_conflicting_numpy_pins_in_one_pipeline(tmp_path):
    ops = tmp_path / "ops"
    version_operator(ops, "numpy1", ["numpy==1.26.4"])
    version_operator(ops, "numpy2", ["numpy==2.0.2"])
    version_operator(ops, "kernel", [])
    registry = Registry([ops], builtin=False)
    pipeline = chain(registry, "kernel", "numpy1", "numpy2", "kernel")
    with Engine("local", tmp_path, registry=registry) as engine:
        run = engine.run(pipeline)
        assert run.ok, run.errors
        np.testing.assert_array_equal(run.outputs["n3"]["out"].data, 8 * np.arange(5.0))
        reported = {n: run.outputs[n]["out"].meta["numpy"] for n in ("n0", "n1", "n2", "n3")}
    assert reported == {"n0": KERNEL_NUMPY, "n1": "1.26.4", "n2": "2.0.2", "n3": KERNEL_NUMPY}
    nodes = run.provenance["nodes"]
    for node_id, version in reported.items():  # provenance agrees with what the code imported
        assert nodes[node_id]["environment"]["packages"]["numpy"] == version
    ids = {n: nodes[n]["environment"]["id"] for n in nodes}
    assert ids["n0"] == ids["n3"] == "kernel" and ids["n1"].startswith("venv:") and ids["n2"].startswith("venv:")
    assert ids["n1"] != ids["n2"]
    assert nodes["n1"]["operator"] == "numpy1" and nodes["n1"]["digest"] == registry.get("numpy1").digest
    assert "oremda-lab" not in nodes["n1"]["environment"]["packages"]  # the worker half is not installed


# -- the worker half on an old stack ------------------------------------------------------

DTYPES_CODE = """
import numpy as np
from oremda_lab.worker.sdk import PortValue, operator

@operator
def run(inputs, params):
    x = np.asarray(inputs["in"].data)
    outputs = {
        "f32": (x * 2).astype(np.float32),
        "c64": (x + 1j * x).astype(np.complex64),  # no Arrow tensor type: the raw-bytes path
        "flags": x > 2,
        "total": np.array(x.sum()),  # 0-d
    }
    return {port: PortValue(value, {"numpy": np.__version__}) for port, value in outputs.items()}
"""


def test_oldest_pyarrow_round_trips_every_dtype(tmp_path):
    description = {
        "name": "dtypes_old",
        "entrypoint": "run:run",
        "requirements": ["numpy==1.26.4", "pyarrow==14.0.2"],
        "ports": {
            "input": {"in": {"type": "data"}},
            "output": {port: {"type": "data"} for port in ("f32", "c64", "flags", "total")},
        },
    }
    ops = tmp_path / "ops"
    write_operator(ops, description, DTYPES_CODE)
    version_operator(ops, "source", [])
    registry = Registry([ops], builtin=False)
    pipeline = chain(registry, "source")
    pipeline.add_node("oremda/dtypes_old", id="old")
    pipeline.connect("n0", "out", "old", "in")
    x = np.arange(5.0)  # what the source emits
    with Engine("local", tmp_path, registry=registry) as engine:
        run = engine.run(pipeline)
        assert run.ok, run.errors
        out = run.outputs["old"]
        assert out["f32"].meta["numpy"] == "1.26.4"
        np.testing.assert_array_equal(out["f32"].data, np.array([0, 2, 4, 6, 8], np.float32))
        assert out["f32"].data.dtype == np.float32
        np.testing.assert_array_equal(out["c64"].data, (x + 1j * x).astype(np.complex64))
        np.testing.assert_array_equal(out["flags"].data, [False, False, False, True, True])
        assert out["total"].data.shape == () and out["total"].data == 10.0
    assert run.provenance["nodes"]["old"]["environment"]["packages"]["pyarrow"] == "14.0.2"


class TestOldStack(RuntimeContract):
    """The whole runtime contract with the fault operator in a numpy 1.26 / pyarrow 15 venv."""

    runtime = "local"

    def operators(self, data_dir):
        folder = data_dir / "ops" / "fault"
        if not folder.exists():
            shutil.copytree(FAULT_OPERATORS / "fault", folder)
            description = json.loads((folder / "operator.json").read_text())
            (folder / "operator.json").write_text(json.dumps({**description, "requirements": OLD_STACK}))
        return Registry([folder.parent], builtin=False)

    def test_worker_reports_the_old_stack(self, engine):
        from oremda_lab.testing import fault_pipeline

        run = engine.run(fault_pipeline({}, {}))
        assert run.ok, run.errors
        env = run.provenance["nodes"]["n0"]["environment"]
        assert env["id"].startswith("venv:")
        assert env["packages"]["numpy"] == "1.26.4" and env["packages"]["pyarrow"] == "15.0.2"
        np.testing.assert_array_equal(run.outputs["n1"]["out"].data, np.full(16, 2.0))


# -- the cache: oremda-lab envs ---------------------------------------------------------


def test_envs_lists_and_prunes_the_cache(fresh_cache, tmp_path, monkeypatch, capsys):
    from oremda_lab.cli import main

    ops = tmp_path / "ops"
    version_operator(ops, "old_numpy", ["numpy<2"])
    monkeypatch.setenv("OREMDA_OPERATORS_PATH", str(ops))
    kept = ensure_environment(OperatorSpec.from_dict({"name": "a", "requirements": ["numpy<2"]}))
    old = ensure_environment(OperatorSpec.from_dict({"name": "b", "requirements": ["numpy<2", "pyarrow<20"]}))
    month_ago = time.time() - 40 * 86400
    os.utime(Path(old.python).parents[1] / environments.LAST_USED, (month_ago, month_ago))
    broken = fresh_cache / "envs" / "0123456789abcdef"  # a build that died: no marker
    (broken / "bin").mkdir(parents=True)
    building = fresh_cache / "envs" / ".fedcba9876543210-x1"  # another engine's build in progress
    building.mkdir()

    assert main(["envs"]) == 0
    listed = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[:-1]}
    assert listed.keys() == {kept.key, old.key, broken.name, "fedcba9876543210"}
    assert listed[kept.key].endswith("packages  old_numpy") and "python 3." in listed[kept.key]
    assert listed[old.key].endswith("packages  -") and listed[broken.name].endswith("(incomplete)")
    by_key = {e.key: e for e in environments.cached_environments()}
    assert by_key[old.key].last_used == month_ago and by_key[kept.key].last_used > month_ago
    assert 0 < by_key[kept.key].own <= by_key[kept.key].size

    with open(fresh_cache / "envs" / "fedcba9876543210.lock", "a") as lock:  # the builder holds its lock
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert main(["envs", "prune", "--dry-run"]) == 0
        assert {line.split()[2] for line in capsys.readouterr().out.splitlines()[:-1]} == {old.key, broken.name}
        assert broken.exists() and Path(old.python).parents[1].exists()
        assert main(["envs", "prune"]) == 0
    assert "removed 2 environments" in capsys.readouterr().out
    assert not broken.exists() and not Path(old.python).parents[1].exists() and building.exists()
    assert ensure_environment(OperatorSpec.from_dict({"name": "a", "requirements": ["numpy<2"]})) == kept

    monkeypatch.setenv("OREMDA_OPERATORS_PATH", str(tmp_path / "none"))  # no operator needs it any more
    assert main(["envs", "prune", "--unused", "--older-than", "inf"]) == 0
    assert not Path(kept.python).parents[1].exists()
    assert main(["envs", "prune", "--older-than", "nan"]) == 2
    assert "--older-than must be a number of days" in capsys.readouterr().err


def other_python() -> tuple[str, str] | None:
    """A Python >= 3.9 of another minor version than the kernel's (on PATH or pyenv's): path, version."""
    kernel = platform.python_version_tuple()[:2]
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    candidates = [shutil.which(f"python3.{minor}") for minor in range(9, 15)]
    candidates += sorted(str(p) for p in pyenv.glob("3.*/bin/python3"))
    for path in filter(None, candidates):
        asked = [path, "-c", "import platform; print(platform.python_version())"]
        done = subprocess.run(asked, capture_output=True, text=True, check=False)
        version = done.stdout.strip()
        if done.returncode == 0 and tuple(version.split(".")[:2]) != kernel and int(version.split(".")[1]) >= 9:
            return path, version
    return None


def test_uv_installs_a_python_the_machine_lacks(tmp_path, monkeypatch, fresh_cache):
    """The operator asks for a Python no PATH entry has: uv installs it, the venv uses it.

    uv downloads Pythons from python-build-standalone, which needs the internet; here its
    download list (``UV_PYTHON_DOWNLOADS_JSON_URL``) names a tarball packed from another
    Python on this machine instead, which is then hidden from the search path.
    """
    found = other_python()
    if found is None:
        pytest.skip("no second Python (>= 3.9, another minor version) on this machine to pack as a download")
    source, version = found
    prefix = Path(subprocess.check_output([source, "-c", "import sys; print(sys.base_prefix)"], text=True).strip())
    major, minor, patch = version.split(".")[:3]
    archive = tmp_path / f"cpython-{version}.tar.gz"
    skip = {"test", "site-packages", "idlelib", "tkinter", "__pycache__"}
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        tar.add(prefix, arcname="python", filter=lambda info: None if Path(info.name).name in skip else info)
    downloads = {
        f"cpython-{version}-linux-x86_64-gnu": {
            "name": "cpython", "arch": {"family": "x86_64", "variant": None}, "os": "linux", "libc": "gnu",
            "major": int(major), "minor": int(minor), "patch": int(patch), "prerelease": "", "variant": None,
            "url": archive.as_uri(), "sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
        }
    }  # fmt: skip
    (tmp_path / "downloads.json").write_text(json.dumps(downloads))
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS", "automatic")
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS_JSON_URL", str(tmp_path / "downloads.json"))
    monkeypatch.setenv("UV_PYTHON_INSTALL_DIR", str(tmp_path / "pythons"))
    monkeypatch.setenv("UV_PYTHON_BIN_DIR", str(tmp_path / "bin"))
    monkeypatch.setenv(
        "PATH", os.pathsep.join(p for p in ("/usr/bin", "/bin") if not Path(p, f"python{major}.{minor}").exists())
    )
    wanted = f"{major}.{minor}"
    heard = []
    python, got = environments.interpreter(wanted, heard.append)
    assert heard == [f"installing Python {wanted} ..."]
    assert got == version and Path(python).is_relative_to(tmp_path / "pythons")
    registry = Registry(
        [version_operator(tmp_path / "ops", "installed_python", [], python=wanted).parent], builtin=False
    )
    with Engine("local", tmp_path, registry=registry, start_timeout=600) as engine:
        run = engine.run(chain(registry, "installed_python"))
        assert run.ok, run.errors
        np.testing.assert_array_equal(run.outputs["n0"]["out"].data, np.arange(5.0))
    assert run.provenance["nodes"]["n0"]["environment"]["python"] == version
