"""Older and upstream pipeline JSON -> the current version (and nowhere else).

Version history
---------------
- (none): upstream OREMDA files. Same nodes and edges; no ``version`` field.
- 1: adds ``version``, node ``position`` and the export ``provenance`` block.
"""

from __future__ import annotations

import copy
from typing import Any

CURRENT_VERSION = 1


def upgrade(doc: dict[str, Any]) -> dict[str, Any]:
    """Return ``doc`` in the current version (a copy; the input is not changed).

    Examples
    --------
    >>> upgrade({"nodes": [], "edges": []})["version"]
    1
    """
    doc = copy.deepcopy(doc)
    version = doc.get("version", 0)
    if not isinstance(version, int) or version < 0:
        raise ValueError(f"pipeline version {version!r} is not a version number")
    if version > CURRENT_VERSION:
        raise ValueError(
            f"pipeline version {version} is newer than this oremda-lab reads ({CURRENT_VERSION}); upgrade oremda-lab"
        )
    if version == 0:
        doc = _from_upstream(doc)
    return doc


def _from_upstream(doc: dict[str, Any]) -> dict[str, Any]:
    # Upstream ids were often numbers in disguise; the graph itself is already compatible.
    nodes = doc.get("nodes")
    for node in nodes if isinstance(nodes, list) else []:  # a wrong shape is validation's to report
        if isinstance(node, dict) and "id" in node:
            node["id"] = str(node["id"])
    doc["version"] = 1
    return doc
