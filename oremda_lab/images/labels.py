"""Check an image's ``oremda.*`` labels, and write an operator's labels for a Dockerfile.

``oremda-lab labels IMAGE`` reads the labels without running the image and checks
them with :func:`check_labels`; ``oremda-lab labels FOLDER --dockerfile`` prints the
``LABEL`` instruction of an operator folder (:func:`dockerfile_labels`), for a
third-party image built with a plain ``docker build``.

Every key is checked against the fields of :class:`~oremda_lab.spec.operator.OperatorSpec`,
:class:`~oremda_lab.spec.operator.PortSpec` and :class:`~oremda_lab.spec.operator.ParamSpec`
(their type annotations say what a value must parse as), so the checker cannot drift
from the description it checks.

Examples
--------
>>> check_labels({"oremda.name": "blur", "oremda.params.sigma.type": "number",
...               "oremda.params.sigma.default": "2", "oremda.params.sigma.min": "0"})
[]
>>> check_labels({"oremda.name": "blur", "oremda.params.sigma.type": "number",
...               "oremda.params.sigma.default": "-1", "oremda.params.sigma.min": "0"})
['oremda.params.sigma.default: -1 is below the minimum 0']
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from oremda_lab.spec.labels import PREFIX, labels_to_spec, spec_to_labels
from oremda_lab.spec.operator import PARAM_TYPES, PORT_TYPES, OperatorSpec, ParamSpec, PortSpec

# Fields of OperatorSpec that are not labels: the ports and params have their own
# key trees; where the description was found is not part of it.
_NOT_LABELS = ("inputs", "outputs", "params", "path", "image")
# Fields whose keys nest freely below them (free JSON).
_FREE = ("metadata", "parallel")
_BOOLS = ("true", "false", "1", "0", "yes", "no")


def check_labels(labels: dict[str, str]) -> list[str]:
    """What is wrong with an operator image's labels (empty when they describe an operator).

    Each problem is one line naming the label. Checked: the name is present, every
    ``oremda.*`` key is one the description knows, each value parses as its field's
    type, port and parameter types are known, ranges are ordered, and each
    parameter's default is valid for its own type, range and choices.
    """
    problems = []
    for key, raw in sorted(labels.items()):
        if key.startswith(PREFIX):
            problem = _check_key(key[len(PREFIX) :].split("."), raw)
            if problem:
                problems.append(f"{key}: {problem}")
    if problems:
        return problems
    try:
        spec = labels_to_spec(labels)
    except ValueError as e:
        return [str(e)]
    for param in spec.params.values():
        key = f"{PREFIX}params.{param.name}"
        if param.min is not None and param.max is not None and param.min > param.max:
            problems.append(f"{key}.min: {param.min} is above the maximum {param.max}")
        if param.type == "enum" and not param.choices:
            problems.append(f"{key}.choices: an enum needs its choices")
        if param.default is not None:
            problems += [f"{key}.default: {message}" for message in param.check(param.default)]
    return problems


def _check_key(parts: list[str], raw: str) -> str | None:
    """Why the label ``oremda.<parts>`` with value ``raw`` is wrong, or None."""
    top = parts[0]
    if parts in (["ports"], ["ports", "input"], ["ports", "output"], ["params"]):
        # a whole tree as one JSON object: what spec_to_labels writes for "no ports"
        return None if isinstance(_json(raw), dict) else f"{raw!r} is not a JSON object"
    if top == "ports":
        if len(parts) != 4 or parts[1] not in ("input", "output"):
            return "expected oremda.ports.input|output.<port>.<field>"
        return _check_field(PortSpec, parts[3], raw)
    if top == "params":
        if len(parts) != 3:
            return "expected oremda.params.<param>.<field>"
        return _check_field(ParamSpec, parts[2], raw)
    if top in _FREE:
        return None if len(parts) > 1 else _check_field(OperatorSpec, top, raw)
    if len(parts) != 1 or top in _NOT_LABELS:
        return "not an operator label"
    return _check_field(OperatorSpec, top, raw)


def _check_field(cls: type, name: str, raw: str) -> str | None:
    fields = {f.name: str(f.type) for f in dataclasses.fields(cls) if f.name != "name" or cls is OperatorSpec}
    if name not in fields or (cls is OperatorSpec and name in _NOT_LABELS):
        return f"unknown field {name!r} (known: {', '.join(sorted(set(fields) - set(_NOT_LABELS)))})"
    kind = fields[name].removesuffix(" | None")
    if name == "type":
        allowed = PORT_TYPES if cls is PortSpec else PARAM_TYPES
        return None if raw in allowed else f"{raw!r} is not one of {', '.join(allowed)}"
    if kind == "bool":
        return None if raw.strip().lower() in _BOOLS else f"{raw!r} is not a bool (true or false)"
    if kind == "str" or kind == "Any":
        return None
    value = _json(raw)
    expected = {"int": int, "float": (int, float), "dict[str, Any]": dict}.get(kind, list)  # tuples: lists
    if isinstance(value, bool) or not isinstance(value, expected):
        return f"{raw!r} is not {'a list' if expected is list else kind}"
    if kind == "tuple[str, ...]" and not all(isinstance(item, str) for item in value):
        return f"{raw!r} is not a list of strings"
    return None


def _json(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def dockerfile_labels(spec: OperatorSpec) -> str:
    r"""The ``LABEL`` instruction that describes ``spec`` in a Dockerfile.

    Values are double-quoted with ``\``, ``"`` and ``$`` escaped (a Dockerfile would
    otherwise expand ``$NAME``).

    Examples
    --------
    >>> print(dockerfile_labels(OperatorSpec("scale", description='times "k"')))
    LABEL oremda.name="scale" \
          oremda.description="times \"k\"" \
          oremda.version="0" \
          oremda.entrypoint="run:main" \
          oremda.ports.input="{}" \
          oremda.ports.output="{}" \
          oremda.params="{}"
    """
    lines = []
    for key, value in spec_to_labels(spec).items():
        if "\n" in value or "\r" in value:
            raise ValueError(f"label {key} holds a line break, which a Dockerfile LABEL cannot carry")
        quoted = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
        lines.append(f'{key}="{quoted}"')
    return "LABEL " + " \\\n      ".join(lines)


def read_labels(client: Any, image: str, prefix: str = "") -> tuple[str, dict[str, str]]:
    """The labels of ``image`` (as named, else as a pipeline names operators); KeyError if absent."""
    import docker.errors

    from oremda_lab.runtime.docker import ImageCatalog

    for ref in dict.fromkeys([image, ImageCatalog(client, prefix).resolve(image)]):
        try:
            return ref, client.images.get(ref).labels or {}
        except docker.errors.ImageNotFound:
            continue
    raise KeyError(f"no image {image} in this engine")
