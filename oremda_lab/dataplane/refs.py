"""ObjectRef: the small handle that travels on the control plane instead of bytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ObjectRef:
    """Where one port value lives in a session's shared memory.

    ``name`` is the file name in the session's object folder; ``kind`` is
    ``tensor`` (an Arrow tensor message) or ``bytes`` (raw bytes); ``dtype`` and
    ``shape`` describe the array a reader gets back; ``nbytes`` is the payload size.
    """

    name: str
    kind: str
    nbytes: int
    dtype: str = ""
    shape: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain form for a control message."""
        return {"name": self.name, "kind": self.kind, "nbytes": self.nbytes, "dtype": self.dtype, "shape": self.shape}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ObjectRef:
        """Inverse of :meth:`to_dict`."""
        return cls(d["name"], d["kind"], int(d["nbytes"]), d.get("dtype", ""), tuple(d.get("shape", ())))
