"""MolmoSpaces "dict" values: JSON text in zero-padded uint8 rows (reference part 1.2)."""

from __future__ import annotations

import json

import numpy as np


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


def _stripped_rows(arr: np.ndarray) -> list[bytes]:
    data = np.ascontiguousarray(arr, dtype=np.uint8)
    width = data.shape[1]
    nonzero = data != 0
    # Index one past the last non-NUL byte of each row (0 for an all-NUL row).
    ends = np.where(nonzero.any(axis=1), width - np.argmax(nonzero[:, ::-1], axis=1), 0)
    raw = data.tobytes()
    return [raw[i * width: i * width + int(e)] for i, e in enumerate(ends)]


def decode_rows(arr: np.ndarray) -> list:
    """All rows of a (T, K) uint8 dataset; raises JsonRowError naming the first bad row.

    Parsing T rows as one JSON array is several times faster than T json.loads calls.
    The fast path is only trusted when every row is a complete object on its own
    (starts with '{', ends with '}') and the array has exactly T elements; anything
    else falls back to row-by-row parsing, which is the reference behaviour.
    """
    if arr.ndim != 2:
        raise JsonRowError(0, f"expected a (T, K) uint8 dataset, got shape {arr.shape}")
    rows = _stripped_rows(arr)
    if all(r[:1] == b"{" and r[-1:] == b"}" for r in rows):
        try:
            values = json.loads(b"[" + b",".join(rows) + b"]")
        except ValueError:
            values = None
        if values is not None and len(values) == len(rows) and all(
                isinstance(v, dict) for v in values):
            return values
    out = []
    for i, r in enumerate(rows):
        try:
            out.append(json.loads(r.decode("utf-8")))
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise JsonRowError(i, str(exc)) from None
    return out
