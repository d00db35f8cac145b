"""Input files in a run's provenance: hashed when first asked for, never during the run.

A data file's ``sha256`` is taken on the first access of ``Run.provenance`` (or
``record()``, ``export_pipeline()``), if the file is still as the run found it (size and
modification time); a file changed in between is recorded as changed, never hashed as
its new bytes. That the run itself reads none of a lazy input's bytes is tested in
``tests/dataplane/test_lazy_io.py``.
"""

import hashlib
import os

import pytest

from oremda_lab import Engine, Pipeline, PipelineError
from oremda_lab.registry import Registry
from oremda_lab.testing import FAULT_OPERATORS, fault_pipeline


@pytest.fixture
def engine(tmp_path):
    with Engine("inline", tmp_path, registry=Registry([FAULT_OPERATORS])) as e:
        yield e


def test_an_input_is_hashed_when_the_provenance_is_asked_for(engine, tmp_path):
    (tmp_path / "x.bin").write_bytes(b"first")
    run = engine.run(fault_pipeline({"mode": "read", "file": "x.bin"}))
    assert run.ok, run.errors
    assert engine._file_hashes == {}  # nothing hashed yet
    digest = "sha256:" + hashlib.sha256(b"first").hexdigest()
    assert run.provenance["inputs"] == {"n0.file": digest}
    assert run.record()["provenance"]["inputs"] == {"n0.file": digest}


def test_a_file_changed_after_the_run_is_recorded_as_changed_and_its_export_refused(engine, tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"first")
    run = engine.run(fault_pipeline({"mode": "read", "file": "x.bin"}))
    assert run.ok, run.errors
    path.write_bytes(b"other bytes")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # a later mtime, whatever the clock
    (recorded,) = run.provenance["inputs"].values()
    assert recorded.startswith("changed since the run: 5 bytes modified at ") and recorded.endswith("not hashed")
    assert "11 bytes" in recorded
    exported = run.export_pipeline()
    assert exported["provenance"]["inputs"] == {"n0.file": recorded}
    with pytest.raises(PipelineError, match=r"input file='x.bin' changed since this pipeline was exported"):
        engine.submit(Pipeline.from_json(exported, catalog=engine.registry))
