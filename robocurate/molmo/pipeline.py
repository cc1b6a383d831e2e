"""One data file through the selected stages, in one crash-safe transaction.

A file's additions (sensor_data names, ``valid_traj_mask``, ``stats/``) are made in a
temporary copy and renamed over the original once verified, so a crash never leaves a
half-written file, and all three stages cost one copy. Each stage writes only when its
result differs from what the file already holds, so a re-run on processed data is a
read-only pass that changes nothing (and its cache key stays valid).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from robocurate.findings import Findings
from robocurate.io.h5safe import H5WriteError, h5_additions
from robocurate.molmo import repair, statistics
from robocurate.molmo.options import MolmoOptions
from robocurate.molmo.validate import traj_keys, trajectory_lengths, validate_file
from robocurate.stats import merge_keyed

STAGES = ("repair", "validate", "stats")
MASK = "valid_traj_mask"


def _stats_of(traj_key, traj, opts, decoded, h5_path, findings, per_traj):
    try:
        per_traj[traj_key] = statistics.trajectory_stats(traj, opts.stat_keys, decoded)
    except (statistics.StatsError, OSError, KeyError) as exc:
        findings.add(h5_path, "stats_failed", str(exc), item=traj_key, severity="error")


def _write_mask(tx, mask: np.ndarray) -> None:
    current = tx.file.get(MASK)
    if current is not None:
        if current.dtype == bool and current.shape == mask.shape and np.array_equal(current[()], mask):
            return
        tx.delete(MASK)
    tx.writable().create_dataset(MASK, data=mask)


def process_file(h5_path: str | Path, split_dir: str | Path, opts: MolmoOptions,
                 stages=STAGES) -> dict:
    """Run ``stages`` on one file; returns a small JSON-safe manifest (never arrays)."""
    h5_path, split_dir = Path(h5_path), Path(split_dir)
    started = time.perf_counter()
    findings = Findings()
    manifest = {
        "path": str(h5_path),
        "relpath": str(h5_path.relative_to(split_dir)),
        "house": h5_path.parent.name,
        "stages": list(stages),
        "status": "ok",
        "n_traj": 0,
        "repaired": 0,
        "valid": None,
        "stats": None,
        "changed": False,
    }
    per_traj: dict = {}
    try:
        with h5_additions(h5_path) as tx:
            if "repair" in stages:
                plan = repair.plan_repairs(tx.file, h5_path, opts.overwrite, findings)
                if plan:
                    repair.apply_repairs(tx.writable(), plan)
                manifest["repaired"] = len(plan)

            keys, _ = traj_keys(tx.file)
            manifest["n_traj"] = len(keys)
            # With --no-overwrite existing stats stay in the file, but the aggregate still
            # needs every file's partials, so they are computed either way.
            want_stats = "stats" in stages
            write_stats = want_stats and (opts.overwrite or "stats" not in tx.file)
            mask = None
            if "validate" in stages and (opts.overwrite or MASK not in tx.file):
                collect = (lambda k, t, d: _stats_of(k, t, opts, d, h5_path, findings, per_traj)
                           ) if want_stats else None
                mask = validate_file(tx.file, h5_path, opts, findings, on_valid=collect)
                _write_mask(tx, mask)
            elif MASK in tx.file:
                mask = np.asarray(tx.file[MASK][()], dtype=bool)
                if want_stats:
                    for i in np.flatnonzero(mask[: len(keys)]):
                        _stats_of(keys[i], tx.file[keys[i]], opts, None, h5_path, findings,
                                  per_traj)
            elif "stats" in stages:
                findings.add(h5_path, "not_validated",
                             f"no {MASK}: run validate before stats", severity="error")

            if mask is not None:
                manifest["valid"] = trajectory_lengths(tx.file, mask, findings, h5_path)
            if write_stats and mask is not None:
                entries = {}
                for key, stats_by_key in per_traj.items():
                    entries.update(statistics.stats_entries(key, stats_by_key))
                if not statistics.entries_match(tx.file, entries):
                    if "stats" in tx.file:
                        tx.delete("stats")
                    statistics.write_entries(tx.writable(), entries)
            if want_stats and mask is not None:
                manifest["stats"] = _partials(per_traj)
            manifest["changed"] = tx.changed
    except H5WriteError:
        raise  # not the data: the task fails, is retried, and a re-run redoes it
    except OSError as exc:
        findings.add(h5_path, "unreadable_file", f"cannot read HDF5 file: {exc}", severity="error")
        manifest["status"] = "unreadable"
    manifest["findings"] = findings.to_list()
    manifest["seconds"] = round(time.perf_counter() - started, 4)
    return manifest


def _partials(per_traj: dict) -> dict:
    """Per-file merged statistics as exact mergeable states, keyed like the aggregate."""
    maps = [{statistics.aggregate_key(dk, g): st for dk, groups in by_key.items()
             for g, st in groups.items()} for by_key in per_traj.values()]
    return {k: st.to_state() for k, st in sorted(merge_keyed(maps).items())}
