"""Stage 3: per-trajectory statistics in ``stats/`` and their dataset-wide aggregate.

Follows scripts/data/calculate_stats.py: JSON-dict datasets give one statistics record
per move group (actions trimmed of the dummy first row and the done sentinel), float
(T, D) datasets give one record; records aggregate under ``<key>/<move_group>`` or
``<key>``. Aggregation uses mergeable float64 statistics instead of the original's
sum/sum_sq, which loses precision on signals with a large offset.
"""

from __future__ import annotations

import json

import h5py
import numpy as np

from robocurate.molmo.jsonrows import JsonRowError, decode_rows
from robocurate.stats import RunningStats


class StatsError(ValueError):
    pass


def _datasets_under(traj: h5py.Group, key: str):
    """Every dataset a key names: the dataset itself, or all datasets below a group."""
    obj = traj.get(key)
    if obj is None:
        raise StatsError(f"key {key} not found")
    if isinstance(obj, h5py.Dataset):
        yield key, obj
        return
    names: list[str] = []
    obj.visit(lambda n: names.append(n) if isinstance(obj[n], h5py.Dataset) else None)
    for n in sorted(names):
        yield f"{key}/{n}", obj[n]


def dataset_stats(data_key: str, ds: h5py.Dataset, decoded: dict | None = None
                  ) -> dict[str, RunningStats]:
    """{move_group: stats} for a JSON-dict dataset, {"": stats} for a float one."""
    if np.issubdtype(ds.dtype, np.integer) and ds.ndim == 2:
        dicts = decoded.get(data_key) if decoded else None
        if dicts is None:
            try:
                dicts = decode_rows(ds[()])
            except JsonRowError as exc:
                raise StatsError(f"{data_key}: malformed JSON at {exc}") from None
        if data_key.startswith("actions/"):
            dicts = dicts[1:-1]
        groups: dict[str, list] = {}
        for d in dicts:
            if not isinstance(d, dict):
                raise StatsError(f"{data_key}: row is not a JSON object")
            for k, v in d.items():
                groups.setdefault(k, []).append(v)
        out = {}
        for k in sorted(groups):
            try:
                arr = np.asarray(groups[k], dtype=np.float64)
            except (ValueError, TypeError):
                raise StatsError(f"{data_key}/{k}: values are not equal-length numeric vectors") from None
            out[k] = RunningStats.from_array(arr.reshape(len(arr), -1))
        return out
    if np.issubdtype(ds.dtype, np.floating) and ds.ndim == 2:
        if ds.shape[0] == 0:
            return {}
        return {"": RunningStats.from_array(ds[()])}
    raise StatsError(f"{data_key}: unsupported data type {ds.dtype} with shape {ds.shape}")


def trajectory_stats(traj: h5py.Group, keys, decoded: dict | None = None
                     ) -> dict[str, dict[str, RunningStats]]:
    """{data_key: {move_group: stats}} for one trajectory."""
    out: dict[str, dict[str, RunningStats]] = {}
    for key in keys:
        for data_key, ds in _datasets_under(traj, key):
            out[data_key] = dataset_stats(data_key, ds, decoded)
    return out


def stats_entries(traj_key: str, per_key: dict[str, dict[str, RunningStats]]) -> dict:
    """The HDF5 entries under ``stats/`` for one trajectory: {path: value}.

    Dict datasets become one JSON string (a dict of per-group records, as the original
    writes it); float datasets a group of arrays.
    """
    entries: dict = {}
    for data_key, groups in per_key.items():
        base = f"stats/{traj_key}/{data_key}"
        if "" in groups:
            st = groups[""]
            for name, value in (("mean", st.mean), ("std", st.std), ("var", st.var),
                                ("min", st.min), ("max", st.max), ("sum", st.sum),
                                ("sum_sq", st.sum_sq)):
                entries[f"{base}/{name}"] = value
            entries[f"{base}/count"] = np.int64(st.count)
        else:
            entries[base] = json.dumps({g: st.summary() for g, st in groups.items()})
    return entries


def aggregate_key(data_key: str, group: str) -> str:
    return f"{data_key}/{group}" if group else data_key


def entries_match(h5, entries: dict) -> bool:
    """Whether ``stats/`` already holds exactly these entries (re-runs then write nothing)."""
    if "stats" not in h5:
        return not entries
    existing: list[str] = []
    h5["stats"].visit(lambda n: existing.append(f"stats/{n}")
                      if isinstance(h5["stats"][n], h5py.Dataset) else None)
    if set(existing) != set(entries):
        return False
    for path, value in entries.items():
        stored = h5[path][()]
        if isinstance(value, str):
            if (stored.decode() if isinstance(stored, bytes) else stored) != value:
                return False
        elif not np.array_equal(np.asarray(stored), np.asarray(value), equal_nan=True):
            return False
    return True


def write_entries(h5w, entries: dict) -> None:
    for path, value in entries.items():
        if isinstance(value, str):
            h5w.create_dataset(path, data=value, dtype=h5py.string_dtype("utf-8"))
        else:
            h5w.create_dataset(path, data=value)
