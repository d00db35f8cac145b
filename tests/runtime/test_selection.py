import json

import pytest

from oremda_lab.runtime import RuntimeUnavailable, runtime_name


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
