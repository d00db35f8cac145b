import json

import pytest

from oremda_lab.engine import Engine
from oremda_lab.runtime import RuntimeChoice, RuntimeUnavailable, default_runtime, runtime_name


def test_precedence_argument_env_config_default(tmp_path, monkeypatch):
    monkeypatch.delenv("OREMDA_RUNTIME", raising=False)
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path))
    assert runtime_name() == "local"
    (tmp_path / "oremda_lab.json").write_text(json.dumps({"runtime": "docker"}))
    assert runtime_name() == "docker"
    monkeypatch.setenv("OREMDA_RUNTIME", "mpi")
    assert runtime_name() == "mpi"
    assert runtime_name("inline") == "inline"


def test_broken_config_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("OREMDA_RUNTIME", raising=False)
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path))
    (tmp_path / "oremda_lab.json").write_text("{runtime")
    with pytest.raises(RuntimeUnavailable, match="cannot read"):
        runtime_name()


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    for name in ("OREMDA_RUNTIME", "OREMDA_MPI_RANKS", "OREMDA_MPI_LAUNCHER", "OREMDA_MPI_IMAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path))
    return tmp_path


def test_default_runtime_from_the_environment(clean_env, monkeypatch):
    assert default_runtime() == RuntimeChoice("local", {})
    monkeypatch.setenv("OREMDA_RUNTIME", "mpi")
    monkeypatch.setenv("OREMDA_MPI_RANKS", "3")
    assert default_runtime() == RuntimeChoice("mpi", {"ranks": 3})
    monkeypatch.setenv("OREMDA_MPI_IMAGES", "podman")
    assert default_runtime() == RuntimeChoice("mpi", {"ranks": 3, "images": "podman"})
    monkeypatch.setenv("OREMDA_RUNTIME", "inline")  # ranks and images belong to mpi only
    assert default_runtime() == RuntimeChoice("inline", {})


def test_default_runtime_from_the_jupyter_config(clean_env, monkeypatch):
    config = {"runtime": "mpi", "options": {"ranks": 4, "launcher": "srun -n {ranks} --mpi=pmi2", "timeout": 60}}
    (clean_env / "oremda_lab.json").write_text(json.dumps(config))
    launcher = ["srun", "-n", "{ranks}", "--mpi=pmi2"]
    assert default_runtime() == RuntimeChoice("mpi", {"ranks": 4, "launcher": launcher, "timeout": 60})
    # the environment wins over the config, value by value
    monkeypatch.setenv("OREMDA_MPI_RANKS", "2")
    monkeypatch.setenv("OREMDA_MPI_LAUNCHER", "mpiexec -n {ranks}")
    assert default_runtime() == RuntimeChoice("mpi", {"ranks": 2, "timeout": 60})
    # the config's options are for its runtime only
    monkeypatch.setenv("OREMDA_RUNTIME", "local")
    assert default_runtime() == RuntimeChoice("local", {})


def test_unknown_images_engine_is_a_clear_error(clean_env, monkeypatch, tmp_path):
    monkeypatch.setenv("OREMDA_RUNTIME", "mpi")
    monkeypatch.setenv("OREMDA_MPI_IMAGES", "singularity")
    with pytest.raises(ValueError, match="images must be one of"):
        Engine(data_dir=tmp_path)


@pytest.mark.parametrize("ranks", ["0", "two", "-1", "1.5"])
def test_bad_rank_count_is_a_clear_error(clean_env, monkeypatch, ranks):
    monkeypatch.setenv("OREMDA_RUNTIME", "mpi")
    monkeypatch.setenv("OREMDA_MPI_RANKS", ranks)
    with pytest.raises(RuntimeUnavailable, match="OREMDA_MPI_RANKS"):
        default_runtime()


def test_config_of_the_wrong_shape_is_a_clear_error(clean_env):
    (clean_env / "oremda_lab.json").write_text(json.dumps({"runtime": "mpi", "options": [4]}))
    with pytest.raises(RuntimeUnavailable, match="expected"):
        default_runtime()


def test_engine_without_a_runtime_uses_the_default(clean_env, monkeypatch, tmp_path):
    """Engine() builds the configured runtime with its options; explicit options still win."""
    monkeypatch.setenv("OREMDA_RUNTIME", "mpi")
    monkeypatch.setenv("OREMDA_MPI_RANKS", "3")
    monkeypatch.setenv("OREMDA_MPI_LAUNCHER", "srun -n {ranks} --mpi=pmi2")
    with Engine(data_dir=tmp_path) as engine:  # nothing starts before the first run
        assert (engine.runtime.name, engine.runtime.ranks) == ("mpi", 3)
        assert engine.runtime.launcher == ["srun", "-n", "{ranks}", "--mpi=pmi2"]
    with Engine("mpi", tmp_path, ranks=2) as engine:
        assert engine.runtime.ranks == 2
    with Engine("inline", tmp_path) as engine:
        assert engine.runtime.name == "inline"


def test_engine_takes_the_configured_options(clean_env, tmp_path):
    """The Jupyter config's options reach Engine()'s runtime; Engine's own None defaults do not mask them."""
    config = {"runtime": "inline", "options": {"timeout": 42, "start_timeout": 7}}
    (clean_env / "oremda_lab.json").write_text(json.dumps(config))
    with Engine(data_dir=tmp_path) as engine:
        assert (engine.runtime.name, engine.runtime.timeout, engine.runtime.start_timeout) == ("inline", 42, 7)
    with Engine(data_dir=tmp_path, timeout=5) as engine:
        assert (engine.runtime.timeout, engine.runtime.start_timeout) == (5, 7)
