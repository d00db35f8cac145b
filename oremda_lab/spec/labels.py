"""Flat ``oremda.*`` image labels <-> :class:`OperatorSpec`.

Labels are flat strings whose dots nest, e.g. ``oremda.ports.input.image.type=data``.
Values that parse as JSON (numbers, lists, booleans) are read as JSON, anything else
as a plain string, so upstream images without our extra keys still load.

Examples
--------
>>> labels = {"oremda.name": "blur", "oremda.ports.input.image.type": "data",
...           "oremda.params.sigma.type": "number", "oremda.params.sigma.default": "2"}
>>> spec = labels_to_spec(labels)
>>> spec.params["sigma"].default
2
>>> spec_to_labels(spec)["oremda.params.sigma.default"]
'2'
"""

from __future__ import annotations

import json
from typing import Any

from oremda_lab.spec.operator import OperatorSpec

PREFIX = "oremda."
# Keys whose value is a free-form JSON document (kept whole, not flattened further).
_JSON_LEAVES = ("choices", "default", "metadata", "parallel", "requirements")
# Top-level keys whose value is text even when it looks like a number.
_STRING_KEYS = ("name", "description", "version", "entrypoint", "python")


def labels_to_spec(labels: dict[str, str]) -> OperatorSpec:
    """Parse image labels into an :class:`OperatorSpec`."""
    tree: dict[str, Any] = {}
    for key, raw in labels.items():
        if not key.startswith(PREFIX):
            continue
        parts = key[len(PREFIX) :].split(".")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"label {key!r} conflicts with a shorter label")
        node[parts[-1]] = _parse_value(raw)
    if "name" not in tree:
        raise ValueError("image labels carry no 'oremda.name'")
    for key in _STRING_KEYS:  # kept as written: "1.10" or "3.10" must not become numbers
        if PREFIX + key in labels:
            tree[key] = labels[PREFIX + key]
    return OperatorSpec.from_dict(tree)


def spec_to_labels(spec: OperatorSpec) -> dict[str, str]:
    """Render an :class:`OperatorSpec` as flat image labels."""
    labels: dict[str, str] = {}
    _flatten(spec.to_dict(), PREFIX.rstrip("."), labels)
    return labels


def _flatten(value: Any, key: str, out: dict[str, str]) -> None:
    leaf = key.rsplit(".", 1)[-1]
    if isinstance(value, dict) and value and leaf not in _JSON_LEAVES:
        for k, v in value.items():
            _flatten(v, f"{key}.{k}", out)
    elif isinstance(value, str):
        out[key] = value
    else:
        out[key] = json.dumps(value)


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw
