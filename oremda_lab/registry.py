"""Operator name -> :class:`OperatorSpec`, read lazily from operator folders.

An operator folder holds ``operator.json`` (the one description) and its code.
The registry searches, in order: folders given explicitly, the ``OREMDA_OPERATORS_PATH``
environment variable (``os.pathsep``-separated), then the library shipped with the
package (``operators/`` in the source tree). Descriptions are parsed on first lookup.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from collections.abc import Iterable
from pathlib import Path

from oremda_lab.spec.operator import OperatorSpec
from oremda_lab.spec.pipeline import operator_name

PATH_ENV = "OREMDA_OPERATORS_PATH"


class Registry:
    """The operators available to pipelines, found in operator folders."""

    def __init__(self, paths: Iterable[str | Path] | None = None, builtin: bool = True):
        search = [Path(p) for p in paths or ()]
        search += [Path(p) for p in os.environ.get(PATH_ENV, "").split(os.pathsep) if p]
        if builtin:
            search.append(builtin_operators_dir())
        self.paths = search
        self._folders: dict[str, Path] | None = None
        self._specs: dict[str, OperatorSpec] = {}

    def folders(self) -> dict[str, Path]:
        """Operator name (its folder name) -> folder; earlier paths win."""
        if self._folders is None:
            found: dict[str, Path] = {}
            for root in self.paths:
                if (root / "operator.json").is_file():
                    found.setdefault(root.name, root)
                    continue
                for desc in sorted(root.glob("*/operator.json")) if root.is_dir() else ():
                    found.setdefault(desc.parent.name, desc.parent)
            self._folders = found
        return self._folders

    def get(self, name: str) -> OperatorSpec:
        """The spec of operator ``name``; KeyError names what exists when it is unknown."""
        spec = self.lookup(name)
        if spec is None:
            raise KeyError(f"unknown operator {name!r}; known: {', '.join(sorted(self.folders()))}")
        return spec

    def lookup(self, image: str) -> OperatorSpec | None:
        """Resolve an image name (``oremda/<name>[:tag]``) or a bare name; None if unknown."""
        name = operator_name(image)
        if name not in self._specs:
            folder = self.folders().get(name)
            if folder is None:
                return None
            try:
                doc = json.loads((folder / "operator.json").read_text())
                spec = OperatorSpec.from_dict(doc, str(folder))
            except (OSError, ValueError) as e:
                raise ValueError(f"operator {name!r}: bad description in {folder}: {e}") from e
            if spec.name != name:
                raise ValueError(f"operator folder {folder.name!r} describes {spec.name!r}; names must match")
            self._specs[name] = spec
        return self._specs[name]

    def all(self) -> list[OperatorSpec]:
        """Every operator, sorted by name."""
        return [self.get(name) for name in sorted(self.folders())]


def builtin_operators_dir() -> Path:
    """The operator library shipped with the package."""
    found = importlib.util.find_spec("oremda_operators")
    if found is None or not found.submodule_search_locations:
        return Path(__file__).resolve().parent.parent / "operators"
    return Path(list(found.submodule_search_locations)[0])


@functools.cache
def default_registry() -> Registry:
    """The registry that pipelines use unless given another."""
    return Registry()
