"""Operator descriptions: ports, typed parameters and the operator itself.

An operator is described once, in ``operators/<name>/operator.json``. The same
description feeds validation, the editor's parameter panel, the image labels
(:mod:`oremda_lab.spec.labels`) and the local runtime.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

PORT_TYPES = ("data", "binary", "display")
PARAM_TYPES = ("number", "integer", "string", "bool", "array", "enum", "object")


@dataclass(frozen=True)
class PortSpec:
    """One named input or output port.

    ``type`` is ``data``, ``binary`` or ``display``; ``dtype`` and ``ndim`` are
    optional hints for the editor and for checks.
    """

    name: str
    type: str = "data"
    required: bool = True
    dtype: str | None = None
    ndim: int | None = None
    description: str = ""

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any]) -> PortSpec:
        """Build from a description-file entry."""
        port = cls(
            name=name,
            type=d.get("type", "data"),
            required=_as_bool(d.get("required", True)),
            dtype=d.get("dtype"),
            ndim=int(d["ndim"]) if d.get("ndim") is not None else None,
            description=d.get("description", ""),
        )
        if port.type not in PORT_TYPES:
            raise ValueError(f"port {name!r}: type {port.type!r} is not one of {PORT_TYPES}")
        return port

    def to_dict(self) -> dict[str, Any]:
        """The description-file entry, without defaults."""
        d: dict[str, Any] = {"type": self.type}
        if not self.required:
            d["required"] = False
        for key in ("dtype", "ndim", "description"):
            if getattr(self, key):
                d[key] = getattr(self, key)
        return d


@dataclass(frozen=True)
class ParamSpec:
    """A typed parameter with optional default, range, step, choices and unit.

    ``per_axis`` numbers accept a scalar or a list of numbers (e.g. a blur sigma);
    ``file`` marks a string that names an input file in the data folder (hashed for
    provenance and cache keys).

    Examples
    --------
    >>> p = ParamSpec("sigma", "number", default=2.0, min=0, max=20)
    >>> p.check(3)
    []
    >>> p.check(-1)
    ['-1 is below the minimum 0']
    >>> p.clamp(25)
    20
    """

    name: str
    type: str = "string"
    required: bool = False
    default: Any = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] | None = None
    unit: str = ""
    description: str = ""
    per_axis: bool = False
    file: bool = False

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any]) -> ParamSpec:
        """Build from a description-file entry."""
        choices = d.get("choices")
        spec = cls(
            name=name,
            type=d.get("type", "string"),
            required=_as_bool(d.get("required", False)),
            default=d.get("default"),
            min=d.get("min"),
            max=d.get("max"),
            step=d.get("step"),
            choices=tuple(choices) if choices is not None else None,
            unit=d.get("unit", ""),
            description=d.get("description", ""),
            per_axis=_as_bool(d.get("per_axis", False)),
            file=_as_bool(d.get("file", False)),
        )
        if spec.type not in PARAM_TYPES:
            raise ValueError(f"param {name!r}: type {spec.type!r} is not one of {PARAM_TYPES}")
        return spec

    def to_dict(self) -> dict[str, Any]:
        """The description-file entry, without empty fields."""
        d: dict[str, Any] = {"type": self.type}
        if self.required:
            d["required"] = True
        if self.default is not None:  # an empty-string default is still a default
            d["default"] = self.default
        for key in ("min", "max", "step", "unit", "description"):
            value = getattr(self, key)
            if value is not None and value != "":
                d[key] = value
        if self.choices is not None:
            d["choices"] = list(self.choices)
        for flag in ("per_axis", "file"):
            if getattr(self, flag):
                d[flag] = True
        return d

    def check(self, value: Any) -> list[str]:
        """Return what is wrong with ``value`` (empty when it is valid)."""
        if self.per_axis and isinstance(value, (list, tuple)):
            if not value:
                return ["an empty list is not a value"]
            return [msg for item in value for msg in self._check_one(item)]
        return self._check_one(value)

    def _check_one(self, value: Any) -> list[str]:
        kind = self.type
        if kind == "bool":
            return [] if isinstance(value, bool) else [f"{value!r} is not a bool"]
        if kind in ("number", "integer"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return [f"{_short(value)} is not a {kind}"]
            if value != value:  # NaN
                return ["NaN is not a value"]
            if isinstance(value, int) and value.bit_length() > 63:
                # beyond what operators (numpy, C) take as an integer; float() would overflow
                return [f"{_short(value)} is too large"]
            if isinstance(value, float) and not math.isfinite(value):
                return [f"{value!r} is not a finite number"]
            if kind == "integer" and isinstance(value, float) and not value.is_integer():
                return [f"{value!r} is not an integer"]
            if self.min is not None and value < self.min:
                return [f"{value!r} is below the minimum {self.min}"]
            if self.max is not None and value > self.max:
                return [f"{value!r} is above the maximum {self.max}"]
            return []
        if kind == "string" and not isinstance(value, str):
            return [f"{_short(value)} is not a string"]
        if self.file and isinstance(value, str) and "\0" in value:
            return ["a file name cannot contain a NUL character"]
        if kind == "array" and not isinstance(value, (list, tuple)):
            return [f"{_short(value)} is not an array"]
        if kind == "object" and not isinstance(value, dict):
            return [f"{_short(value)} is not an object"]
        if self.choices is not None and value not in self.choices:
            return [f"{_short(value)} is not one of {list(self.choices)}"]
        return []

    def normalize(self, value: Any) -> Any:
        """The value an operator receives: an integer given as ``2.0`` becomes ``2``.

        JSON has one number type, so a valid integer may arrive as a float.

        Examples
        --------
        >>> ParamSpec("size", "integer").normalize(2.0)
        2
        >>> ParamSpec("size", "integer", per_axis=True).normalize([2.0, 3])
        [2, 3]
        """
        if self.type != "integer":
            return value
        if self.per_axis and isinstance(value, (list, tuple)):
            return [self.normalize(v) for v in value]
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    def clamp(self, value: Any) -> Any:
        """Bring a number into ``[min, max]`` (what a slider may send)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value
        if self.min is not None and value < self.min:
            value = type(value)(self.min)
        if self.max is not None and value > self.max:
            value = type(value)(self.max)
        return value


@dataclass(frozen=True)
class OperatorSpec:
    """Everything known about an operator without running it.

    ``entrypoint`` is ``module:function`` inside the operator folder ``path``;
    ``requirements`` are the Python packages its environment needs beyond the worker's
    own (numpy, pyarrow), and ``python`` the Python version it needs (``"3.11"``; None:
    any). ``image`` is the image reference the description was read from (None for an
    operator folder).
    """

    name: str
    description: str = ""
    version: str = "0"
    inputs: dict[str, PortSpec] = field(default_factory=dict)
    outputs: dict[str, PortSpec] = field(default_factory=dict)
    params: dict[str, ParamSpec] = field(default_factory=dict)
    entrypoint: str = "run:main"
    requirements: tuple[str, ...] = ()
    python: str | None = None
    network: bool = False
    stateful: bool = False
    parallel: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    image: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: str | None = None, image: str | None = None) -> OperatorSpec:
        """Build from a parsed ``operator.json`` (``path`` is its folder, ``image`` its image)."""
        if not d.get("name"):
            raise ValueError("an operator description needs a 'name'")
        ports = d.get("ports", {})
        return cls(
            name=d["name"],
            description=d.get("description", ""),
            version=str(d.get("version", "0")),
            inputs={k: PortSpec.from_dict(k, v) for k, v in ports.get("input", {}).items()},
            outputs={k: PortSpec.from_dict(k, v) for k, v in ports.get("output", {}).items()},
            params={k: ParamSpec.from_dict(k, v) for k, v in d.get("params", {}).items()},
            entrypoint=d.get("entrypoint", "run:main"),
            requirements=tuple(d.get("requirements", ())),
            python=str(d["python"]) if d.get("python") is not None else None,
            network=_as_bool(d.get("network", False)),
            stateful=_as_bool(d.get("stateful", False)),
            parallel=d.get("parallel"),
            metadata=dict(d.get("metadata", {})),
            path=path,
            image=image,
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``operator.json`` form (without the folder path)."""
        d: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "version": self.version,
            "entrypoint": self.entrypoint,
            "ports": {
                "input": {k: v.to_dict() for k, v in self.inputs.items()},
                "output": {k: v.to_dict() for k, v in self.outputs.items()},
            },
            "params": {k: v.to_dict() for k, v in self.params.items()},
        }
        if self.requirements:
            d["requirements"] = list(self.requirements)
        if self.python:
            d["python"] = self.python
        if self.network:
            d["network"] = True
        if self.stateful:
            d["stateful"] = True
        if self.parallel:
            d["parallel"] = self.parallel
        if self.metadata:
            d["metadata"] = self.metadata
        return d

    @cached_property
    def digest(self) -> str:
        """A content hash of the description (and code, when the folder is known)."""
        h = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode())
        if self.path:  # code and baked-in data files alike
            root = Path(self.path)
            for f in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
                h.update(str(f.relative_to(root)).encode())
                h.update(f.read_bytes())
        return "sha256:" + h.hexdigest()

    def resolved_params(self, given: dict[str, Any]) -> dict[str, Any]:
        """Defaults filled in under the given values, each as :meth:`ParamSpec.normalize` makes it."""
        out = {k: p.default for k, p in self.params.items() if p.default is not None}
        out.update(given)
        return {k: self.params[k].normalize(v) if k in self.params else v for k, v in out.items()}


def file_digest(path: str | Path) -> str:
    """``sha256:<hex>`` of a regular file's bytes, read in 1 MiB blocks.

    Anything else (a FIFO, a device such as ``/dev/zero``, a folder) raises ValueError
    at once: it is opened without blocking and checked before a byte is read.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file")
        h = hashlib.sha256()
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def data_file(root: str | Path, name: str) -> Path:
    """The regular file that the file parameter value ``name`` names in the data folder ``root``.

    The one check behind readers, cache keys and provenance: ``name`` is resolved
    (symlinks followed) and must stay inside ``root`` and be a regular file.

    Raises
    ------
    ValueError
        ``name`` is empty, holds a NUL, leads outside ``root`` or is not a regular file.
    FileNotFoundError
        Nothing is there.

    Examples
    --------
    >>> data_file("/srv/data", "../etc/passwd")
    Traceback (most recent call last):
    ...
    ValueError: '../etc/passwd' is outside the data folder
    """
    if not isinstance(name, str) or not name:
        raise ValueError("no file name given")
    if "\0" in name:
        raise ValueError(f"{name!r} holds a NUL character")
    root = Path(root).resolve()
    path = (root / name).resolve()
    if root != path and root not in path.parents:
        raise ValueError(f"{name!r} is outside the data folder")
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"data file {name!r} not found in the data folder") from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"{name!r} is not a regular file")
    return path


def _short(value: Any, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters (a 400-digit number makes an unreadable message)."""
    if isinstance(value, int) and value.bit_length() >= 200:  # repr() of a huge int may even raise
        return f"<{value.bit_length()}-bit integer>"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)
