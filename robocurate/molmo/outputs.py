"""Split-level outputs built from per-file manifests: the index and aggregate statistics."""

from __future__ import annotations

from pathlib import Path

from robocurate.io.atomic import atomic_write_json
from robocurate.molmo.layout import AGGREGATE_ALIAS, AGGREGATE_NAME, INDEX_NAME, natural_key
from robocurate.stats import RunningStats, merge_all


def build_index(manifests) -> dict:
    """``{house: {relpath: {traj_i: T}}}`` without empty files or houses, in natural order
    (the original's order depends on which worker finished first)."""
    index: dict = {}
    for m in sorted(manifests, key=lambda m: natural_key(m["relpath"])):
        if m.get("valid"):
            trajs = dict(sorted(m["valid"].items(), key=lambda kv: natural_key(kv[0])))
            index.setdefault(m["house"], {})[m["relpath"]] = trajs
    return {h: index[h] for h in sorted(index, key=natural_key)}


def aggregate_stats(manifests) -> dict:
    """``{"<key>/<move_group>": {mean, std, min, max, count, sum, sum_sq}}`` over all files."""
    grouped: dict[str, list[RunningStats]] = {}
    for m in sorted(manifests, key=lambda m: natural_key(m["relpath"])):
        for key, state in (m.get("stats") or {}).items():
            grouped.setdefault(key, []).append(RunningStats.from_state(state))
    return {k: merge_all(v).summary() for k, v in sorted(grouped.items())}


def write_index(split_dir: Path, index: dict, overwrite: bool = True) -> Path | None:
    path = Path(split_dir) / INDEX_NAME
    if path.exists() and not overwrite:
        return None
    atomic_write_json(path, index)
    return path


def write_aggregate(split_dir: Path, aggregate: dict) -> list[Path]:
    paths = [Path(split_dir) / AGGREGATE_NAME, Path(split_dir) / AGGREGATE_ALIAS]
    for p in paths:
        atomic_write_json(p, aggregate)
    return paths
