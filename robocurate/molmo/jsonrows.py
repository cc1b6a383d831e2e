"""MolmoSpaces "dict" values: JSON text in zero-padded uint8 rows (reference part 1.2)."""

from __future__ import annotations

import json

import numpy as np
import orjson


class JsonRowError(ValueError):
    def __init__(self, row: int, reason: str):
        super().__init__(f"row {row}: {reason}")
        self.row = row
        self.reason = reason


def encode_row(value, width: int = 2000) -> np.ndarray:
    """The writer's encoding: sorted keys, compact separators, NUL padded to ``width``."""
    raw = json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")[:width]
    out = np.zeros(width, dtype=np.uint8)
    out[: len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    return out


def decode_row(row: np.ndarray):
    """One row, exactly as the original reader: decode UTF-8, strip trailing NULs, parse."""
    return json.loads(np.asarray(row).tobytes().decode("utf-8").rstrip("\x00"))


def decode_rows(arr: np.ndarray) -> list:
    """All rows of a (T, K) uint8 dataset; raises JsonRowError naming the first bad row.

    Parsing T rows as one JSON array (orjson) is about ten times faster than T
    json.loads calls. The fast path is only trusted when every row is a complete object
    on its own (starts with '{', ends with '}') and the array has exactly T objects;
    anything else (including NaN literals, which only the standard parser accepts)
    falls back to row-by-row parsing, the reference behaviour.
    """
    if arr.ndim != 2:
        raise JsonRowError(0, f"expected a (T, K) uint8 dataset, got shape {arr.shape}")
    data = np.ascontiguousarray(arr, dtype=np.uint8)
    n, width = data.shape
    if n == 0:
        return []
    raw = data.tobytes()
    # Text ends at the first NUL; rows with bytes after it (which the reference's
    # rstrip would keep, and then fail on) take the slow path.
    ends = np.where(data[:, -1] != 0, width, np.argmax(data == 0, axis=1))
    whole_objects = (np.all(ends > 0) and np.all(data[:, 0] == ord("{"))
                     and np.all(data[np.arange(n), ends - 1] == ord("}")))
    if whole_objects and np.array_equal(np.count_nonzero(data, axis=1), ends):
        rows = [raw[i * width: i * width + e] for i, e in enumerate(ends.tolist())]
        try:
            values = orjson.loads(b"[" + b",".join(rows) + b"]")
        except orjson.JSONDecodeError:
            values = None
        if values is not None and len(values) == n and all(isinstance(v, dict) for v in values):
            return values
    out = []
    for i in range(n):
        try:
            out.append(json.loads(raw[i * width:(i + 1) * width].rstrip(b"\0").decode("utf-8")))
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise JsonRowError(i, str(exc)) from None
    return out
