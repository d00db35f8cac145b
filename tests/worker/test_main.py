import numpy as np
import pytest

from oremda_lab.dataplane.arena import Arena
from oremda_lab.dataplane.refs import ObjectRef
from oremda_lab.spec.operator import OperatorSpec
from oremda_lab.worker import protocol
from oremda_lab.worker.main import Worker
from oremda_lab.worker.sdk import PortValue, data_path, output_array

SPEC = OperatorSpec.from_dict({"name": "op", "ports": {"input": {"in": {"required": False}}, "output": {"out": {}}}})


def handle(arena, func, inputs=None, task="t1"):
    worker = Worker(SPEC, func, Arena.attach(arena.path), data_dir=str(arena.path))
    return protocol.decode(worker.handle({"task": task, "params": {}, "inputs": inputs or {}}))


@pytest.fixture
def arena(tmp_path):
    with Arena.create(root=tmp_path) as a:
        yield a


def test_output_array_is_stored_without_a_copy(arena):
    def fill(inputs, params):
        out = output_array((4, 5), "float32")
        out[:] = 7
        output_array(3)[:] = 0  # allocated but never returned: must not stay behind
        return {"out": out}

    ref = handle(arena, fill)["outputs"]["out"]["ref"]
    assert ref["name"] == "t1--alloc0" and arena.live() == ["t1--alloc0"]
    np.testing.assert_array_equal(arena.get(ObjectRef.from_dict(ref)), np.full((4, 5), 7, np.float32))


def test_failed_operator_leaves_no_allocations(arena):
    def fail(inputs, params):
        output_array(10)
        raise RuntimeError("boom")

    reply = handle(arena, fail)
    assert reply["op"] == protocol.ERROR and "RuntimeError: boom" in reply["error"]
    assert arena.live() == []


def test_outputs_are_checked_against_the_spec(arena):
    assert "did not return outputs ['out']" in handle(arena, lambda i, p: {})["error"]
    assert "unknown outputs ['other']" in handle(arena, lambda i, p: {"out": 1, "other": 2})["error"]
    assert "not a dict" in handle(arena, lambda i, p: [1])["error"]


def test_inputs_are_read_only_views_with_meta(arena):
    ref = arena.put(np.arange(4.0), "input")

    def look(inputs, params):
        value = inputs["in"]
        assert not value.data.flags.writeable
        return {"out": PortValue(value.data * 2, {"seen": value.meta["unit"]})}

    reply = handle(arena, look, {"in": {"ref": ref.to_dict(), "meta": {"unit": "nm"}}})
    assert reply["outputs"]["out"]["meta"] == {"seen": "nm"}


def test_data_path_refuses_escapes(tmp_path, monkeypatch):
    (tmp_path / "a.tif").write_bytes(b"x")
    monkeypatch.setenv("OREMDA_DATA_DIR", str(tmp_path))
    assert data_path("a.tif") == tmp_path / "a.tif"
    with pytest.raises(ValueError, match="outside the data folder"):
        data_path("../etc/passwd")
    with pytest.raises(FileNotFoundError, match="not found in the data folder"):
        data_path("missing.tif")


def test_an_input_returned_unchanged_is_passed_on_without_a_copy(arena):
    ref = arena.put(np.arange(1000.0), "input")
    reply = handle(arena, lambda inputs, params: {"out": inputs["in"]}, {"in": {"ref": ref.to_dict(), "meta": {}}})
    assert ObjectRef.from_dict(reply["outputs"]["out"]["ref"]) == ref
    assert arena.live() == ["input"]
