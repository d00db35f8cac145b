"""Operator name or image -> :class:`OperatorSpec`: from operator folders, then images.

An operator folder holds ``operator.json`` (the one description) and its code.
The registry searches, in order: folders given explicitly, the ``OREMDA_OPERATORS_PATH``
environment variable (``os.pathsep``-separated), then the library shipped with the
package (``operators/`` in the source tree). Descriptions are parsed on first lookup.

After the folders come *catalogs*: anything with ``lookup(image)`` (and ``all()``) that
reads operator descriptions from image labels, e.g. a container engine's
:class:`~oremda_lab.runtime.docker.ImageCatalog`. An :class:`~oremda_lab.engine.Engine`
adds its runtime's catalog, so any image with ``oremda.*`` labels is an operator there.

What a pipeline node names decides where it is looked up:

* ``NAME``, ``oremda/NAME[:TAG]`` (and Podman's ``localhost/oremda/NAME[:TAG]``): the
  folder of that name first, then the catalogs (an operator that exists only as an image);
* anything else (``REGISTRY/ORG/NAME:TAG``, ``ORG/NAME``, ``...@sha256:...``) names
  one image exactly: only the catalogs answer, and the spec carries that image.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from oremda_lab.spec.operator import OperatorSpec
from oremda_lab.spec.pipeline import Catalog, operator_name

PATH_ENV = "OREMDA_OPERATORS_PATH"
IMAGE_REPOSITORY = "oremda"  # the repository that names operators by folder name


class ImageName(NamedTuple):
    """An image reference split into repository, tag and digest (either may be empty).

    Examples
    --------
    >>> split_reference("127.0.0.1:5000/lab/blur:1.0@sha256:ab")
    ImageName(repository='127.0.0.1:5000/lab/blur', tag='1.0', digest='sha256:ab')
    >>> split_reference("oremda/crop2d")
    ImageName(repository='oremda/crop2d', tag='', digest='')
    """

    repository: str
    tag: str
    digest: str

    def __str__(self) -> str:
        return self.repository + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def split_reference(ref: str) -> ImageName:
    """Split ``[HOST[:PORT]/]PATH[:TAG][@DIGEST]`` (a port is not a tag)."""
    name, _, digest = ref.partition("@")
    head, slash, last = name.rpartition("/")
    last, _, tag = last.partition(":")
    return ImageName(head + slash + last, tag, digest)


def names_image(ref: str) -> bool:
    """Whether ``ref`` names one image exactly, rather than an operator by name.

    Examples
    --------
    >>> [names_image(r) for r in ("crop2d", "oremda/crop2d:1.0.0", "localhost/oremda/crop2d")]
    [False, False, False]
    >>> [names_image(r) for r in ("lab/crop2d", "reg.org:5000/lab/crop2d:1", "oremda/crop2d@sha256:ab")]
    [True, True, True]
    """
    image = split_reference(ref)
    if image.digest:
        return True
    parts = image.repository.split("/")
    if parts[0] == "localhost":
        parts = parts[1:]
    return not (len(parts) == 1 or (len(parts) == 2 and parts[0] == IMAGE_REPOSITORY))


class Registry:
    """The operators available to pipelines: operator folders, then image catalogs.

    Parameters
    ----------
    paths
        Folders searched before ``OREMDA_OPERATORS_PATH`` and the shipped library.
    builtin
        Include the shipped library.
    catalogs
        Image catalogs asked after the folders (see the module docstring).
    """

    def __init__(
        self,
        paths: Iterable[str | Path] | None = None,
        builtin: bool = True,
        catalogs: Iterable[Catalog] = (),
    ):
        search = [Path(p) for p in paths or ()]
        search += [Path(p) for p in os.environ.get(PATH_ENV, "").split(os.pathsep) if p]
        if builtin:
            search.append(builtin_operators_dir())
        self.paths = search
        self.catalogs = list(catalogs)
        self._folders: dict[str, Path] | None = None
        self._specs: dict[str, OperatorSpec] = {}

    def with_catalogs(self, *catalogs: Catalog) -> Registry:
        """A registry over the same folders (parsed ones shared) that also asks ``catalogs``."""
        other = Registry.__new__(Registry)
        other.paths, other._folders, other._specs = self.paths, self._folders, self._specs
        other.catalogs = [*self.catalogs, *catalogs]
        return other

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
            known = sorted({*self.folders(), *(s.name for s in self._catalog_specs())})
            raise KeyError(f"unknown operator {name!r}; known: {', '.join(known)}")
        return spec

    def lookup(self, image: str) -> OperatorSpec | None:
        """Resolve what a pipeline node names (see the module docstring); None if unknown.

        Misses are not remembered: an image pulled later is found.
        """
        if not names_image(image):
            spec = self._folder_spec(operator_name(image))
            if spec is not None:
                return spec
        for catalog in self.catalogs:
            spec = catalog.lookup(image)
            if spec is not None:
                return spec
        return None

    def all(self) -> list[OperatorSpec]:
        """Every operator, sorted by name: folders, then images of other names."""
        specs = {name: self.get(name) for name in self.folders()}
        for spec in self._catalog_specs():
            specs.setdefault(spec.name, spec)
        return [specs[k] for k in sorted(specs)]

    def _catalog_specs(self) -> list[OperatorSpec]:
        return [spec for catalog in self.catalogs for spec in getattr(catalog, "all", list)()]

    def _folder_spec(self, name: str) -> OperatorSpec | None:
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
