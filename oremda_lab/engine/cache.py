"""Output cache: key = hash(operator digest, canonical params, input keys).

State and policy
----------------
``entries`` maps a node key to its outputs (ObjectRefs + meta). Keys are deterministic,
so a parameter change gives its node (and, through input keys, every descendant) a
new key, while untouched nodes hit. After each run the engine calls :meth:`retain`
with the keys it used: those stay, and of the rest the most recently used stay
while they fit in ``spare_bytes`` (so a slider moved back hits). Evicted entries'
objects are freed in the arena once no entry holds them (an operator that passes an
input on unchanged shares its buffer: ``holders`` counts the entries per object).
Each large object a run made (``PREFILL_BYTES`` up to ``PREFILL_MAX_BYTES``) gets a
buffer of its size made ready in the arena's pool, in the background
(:meth:`Arena.prefill`): while spare entries keep their buffers, the next run of a
slider would otherwise pay for fresh pages on its path. Larger objects get none: a
buffer that size would sit in memory for a re-run that may never come.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any

from oremda_lab.dataplane.arena import Arena

DEFAULT_SPARE_BYTES = 1 << 30
#: Objects from this size up to PREFILL_MAX_BYTES get a ready buffer of their size in the pool after a run.
PREFILL_BYTES = 4 << 20
PREFILL_MAX_BYTES = 256 << 20


@dataclass
class Entry:
    """The outputs of one node execution."""

    key: str
    outputs: dict[str, dict[str, Any]]  # port -> wire value {"ref": dict|None, "meta": dict}
    duration_s: float

    @property
    def nbytes(self) -> int:
        """Shared memory the entry holds."""
        return sum(v["ref"]["nbytes"] for v in self.outputs.values() if v["ref"])


def node_key(digest: str, params: dict[str, Any], inputs: dict[str, str]) -> str:
    """The cache key of a node run.

    Examples
    --------
    >>> node_key("sha256:x", {"b": 1, "a": 2}, {}) == node_key("sha256:x", {"a": 2, "b": 1}, {})
    True
    """
    canonical = json.dumps([digest, params, sorted(inputs.items())], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class Cache:
    """Node outputs by key, with a byte budget for entries the last run did not use."""

    def __init__(self, arena: Arena, spare_bytes: int = DEFAULT_SPARE_BYTES):
        self.arena = arena
        self.spare_bytes = spare_bytes
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        self.holders: Counter[str] = Counter()
        self._made: set[int] = set()  # sizes of the large objects stored since the last retain
        self._prefilling: threading.Thread | None = None

    def get(self, key: str) -> Entry | None:
        """The entry for ``key`` (marked most recently used), or None."""
        entry = self.entries.get(key)
        if entry is not None:
            self.entries.move_to_end(key)
        return entry

    def put(self, entry: Entry) -> Entry:
        """Store an entry; returns the one stored under its key.

        A key already stored keeps its first entry: two identical nodes, or a newer run
        and an in-flight task of a superseded one, computed the same thing, and results
        already handed out refer to the first. The duplicate's objects are freed.
        """
        self.holders.update(_names(entry))
        first = self.entries.get(entry.key)
        if first is not None:
            self._free(entry)
            self.entries.move_to_end(entry.key)
            return first
        self.entries[entry.key] = entry
        sizes = (v["ref"]["nbytes"] for v in entry.outputs.values() if v["ref"])
        self._made.update(n for n in sizes if PREFILL_BYTES <= n <= PREFILL_MAX_BYTES)
        return entry

    def retain(self, keep: set[str]) -> None:
        """Keep ``keep``, plus the most recent others within the spare budget; free the rest."""
        spare = 0
        for key in reversed(list(self.entries)):
            if key in keep:
                continue
            entry = self.entries[key]
            spare += entry.nbytes
            if spare > self.spare_bytes:
                del self.entries[key]
                self._free(entry)
        sizes, self._made = sorted(self._made), set()
        if sizes and (self._prefilling is None or not self._prefilling.is_alive()):
            self._prefilling = threading.Thread(target=self._prefill, args=(sizes,), name="oremda-prefill", daemon=True)
            self._prefilling.start()

    def _prefill(self, sizes: list[int]) -> None:
        for size in sizes:
            self.arena.prefill(size)

    def clear(self) -> None:
        """Free everything (after a buffer being made ahead is done: the arena may close next)."""
        if self._prefilling is not None:
            self._prefilling.join()
        for entry in self.entries.values():
            self._free(entry)
        self.entries.clear()

    def _free(self, entry: Entry) -> None:
        for name in _names(entry):
            self.holders[name] -= 1
            if self.holders[name] <= 0:
                del self.holders[name]
                self.arena.free(name)


def _names(entry: Entry) -> list[str]:
    return [value["ref"]["name"] for value in entry.outputs.values() if value["ref"]]
