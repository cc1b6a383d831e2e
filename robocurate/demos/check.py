"""Validation of demonstration HDF5 files: errors (unusable data) and warnings (quirks).

Every numeric dataset is streamed once in chunk-aligned blocks: NaN/Inf are found with
their first offending index without loading the dataset, and the action range check for
robomimic rides on the same pass.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import h5py
import numpy as np

from robocurate.demos.layout import (demo_keys, demo_number, detect_schema, iter_datasets,
                                     iter_row_blocks, obs_group)
from robocurate.findings import Findings

# Datasets that hold one row per step (checked against num_samples); initial_state and
# the like hold one row per demo.
PER_STEP = ("obs", "next_obs", "observations", "actions", "rewards", "dones", "states")


def _first_index(mask: np.ndarray, start: int) -> list[int]:
    idx = np.unravel_index(int(np.argmax(mask)), mask.shape)
    return [int(idx[0]) + start, *map(int, idx[1:])]


def _scan_numeric(ds: h5py.Dataset, check_range: bool):
    """(first NaN index, first Inf index, (first out-of-range index, count))."""
    nan_at = inf_at = range_at = None
    out_of_range = 0
    if ds.dtype.kind != "f":
        return None, None, (None, 0)
    for start, block in iter_row_blocks(ds):
        block = np.asarray(block)
        if nan_at is None:
            bad = np.isnan(block)
            if bad.any():
                nan_at = _first_index(bad, start)
        if inf_at is None:
            bad = np.isinf(block)
            if bad.any():
                inf_at = _first_index(bad, start)
        if check_range:  # on finite values: NaN/Inf are reported as such, not twice
            with np.errstate(invalid="ignore"):
                bad = np.isfinite(block) & ((block < -1.0) | (block > 1.0))
            n = int(bad.sum())
            if n:
                out_of_range += n
                if range_at is None:
                    range_at = _first_index(bad, start)
    return nan_at, inf_at, (range_at, out_of_range)


def _steps(ds: h5py.Dataset) -> int:
    return ds.shape[0] if ds.ndim else 1


def check_file(path: str | Path, schema: str = "auto") -> dict:
    """Findings for one file as a small manifest (never raises for data problems)."""
    path = Path(path)
    findings = Findings()
    manifest = {"path": str(path), "schema": schema, "status": "ok", "demos": 0,
                "steps": 0}
    try:
        with h5py.File(path, "r") as f:
            manifest["schema"] = schema = detect_schema(f) if schema == "auto" else schema
            _check(f, path, schema, findings, manifest)
    except OSError as exc:
        findings.add(path, "unreadable_file", f"cannot read HDF5 file: {exc}")
        manifest["status"] = "unreadable"
    manifest["findings"] = findings.to_list()
    manifest["errors"] = sum(f.severity == "error" for f in findings)
    manifest["warnings"] = sum(f.severity == "warning" for f in findings)
    return manifest


def _check(f: h5py.File, path: Path, schema: str, findings: Findings, manifest: dict) -> None:
    data = f.get("data")
    if not isinstance(data, h5py.Group):
        findings.add(path, "no_data_group", "no 'data' group")
        return
    if schema == "seed" and "metadata" not in f:
        findings.add(path, "no_metadata", "no 'metadata' group", severity="warning")
    elif schema == "robomimic" and "env_args" not in data.attrs:
        findings.add(path, "no_metadata", "data has no env_args attribute", severity="warning")
    if schema == "robosuite":
        findings.add(path, "robosuite_raw_layout",
                     "robosuite raw demo layout (states, actions, model_file; no observations): "
                     "convert with robomimic's conversion script before training",
                     severity="warning")

    keys = demo_keys(data)
    manifest["demos"] = len(keys)
    numbers = sorted(n for n in map(demo_number, keys) if n is not None)
    if numbers:
        missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
        if missing:
            shown = ", ".join(f"demo_{n}" for n in missing[:10])
            findings.add(path, "demo_gap", f"demo numbering has gaps: {shown}"
                         f"{' ...' if len(missing) > 10 else ''} missing", severity="warning")

    signatures: dict[str, list[tuple[str, tuple, str]]] = {}
    total = 0
    successes = []
    for key in keys:
        demo = data[key]
        if not isinstance(demo, h5py.Group):
            continue
        if "success" in demo.attrs:
            successes.append(bool(np.asarray(demo.attrs["success"]).ravel()[0]))
        total += _check_demo(demo, key, path, schema, findings, signatures)
    manifest["steps"] = total

    for name, entries in signatures.items():
        dtypes = Counter(d for _, _, d in entries)
        shapes = Counter(s for _, s, _ in entries)
        common_dtype, common_shape = dtypes.most_common(1)[0][0], shapes.most_common(1)[0][0]
        for demo_key, shape, dtype in entries:
            if dtype != common_dtype:
                findings.add(path, "dtype_mismatch", f"{name} is {dtype}, other demos {common_dtype}",
                             item=demo_key)
            if shape != common_shape:
                findings.add(path, "shape_mismatch", f"{name} has per-step shape {shape}, "
                             f"other demos {common_shape}", item=demo_key)

    if schema in ("robomimic", "seed") and "total" in data.attrs:
        stored = int(np.asarray(data.attrs["total"]).ravel()[0])
        if schema == "robomimic":
            what, counted = "num_samples", sum(
                int(np.asarray(data[k].attrs["num_samples"]).ravel()[0]) for k in keys
                if isinstance(data[k], h5py.Group) and "num_samples" in data[k].attrs)
        else:
            what, counted = "action counts", total
        if stored != counted:
            findings.add(path, "stale_total", f"data.attrs['total'] is {stored}, the demos' "
                         f"{what} add up to {counted}", severity="warning")
    if successes and not any(successes):
        findings.add(path, "no_successful_demos", f"all {len(successes)} demos have success=False",
                     severity="warning")
    _check_masks(f, set(keys), path, findings)


def _check_demo(demo, key, path, schema, findings, signatures) -> int:
    """Checks one demo; returns its step count."""
    obs = obs_group(demo, schema)
    actions = demo.get("actions")
    if schema != "robosuite" and obs is None:
        findings.add(path, "no_observations", "demo has no observations", item=key)
    if not isinstance(actions, h5py.Dataset):
        findings.add(path, "no_actions", "demo has no actions dataset", item=key)
        actions = None

    # One walk of the demo's tree: every rule below reads from this list.
    datasets = list(iter_datasets(demo))
    obs_prefix = obs.name.rsplit("/", 1)[-1] + "/" if obs is not None else None
    obs_datasets = [(n, ds) for n, ds in datasets if obs_prefix and n.startswith(obs_prefix)]
    for name, ds in datasets:
        if ds.dtype.kind not in "biuf":
            continue
        nan_at, inf_at, (range_at, n_out) = _scan_numeric(
            ds, check_range=schema in ("robomimic", "seed") and name == "actions")
        if nan_at is not None:
            findings.add(path, "nan", f"{name} contains NaN, first at index {nan_at}", item=key)
        if inf_at is not None:
            findings.add(path, "inf", f"{name} contains Inf, first at index {inf_at}", item=key)
        if n_out:
            findings.add(path, "actions_out_of_range", f"{n_out} action values outside [-1, 1], "
                         f"first at index {range_at}", item=key, severity="warning")
        if name.split("/")[0] in PER_STEP:
            signatures.setdefault(name, []).append((key, tuple(ds.shape[1:]), str(ds.dtype)))

    steps = _steps(actions) if actions is not None else 0
    # The declared step count against the data; observation lengths are judged by the
    # observation/action convention below instead, so one fault is reported once.
    counted = "length" if schema == "seed" else "num_samples"
    if counted in demo.attrs:
        n = int(np.asarray(demo.attrs[counted]).ravel()[0])
        counted_sets = obs_datasets if schema == "seed" else [
            (name, ds) for name, ds in datasets
            if name.split("/")[0] in ("actions", "rewards", "dones", "states")]
        wrong = [name for name, ds in counted_sets if _steps(ds) != n]
        if wrong:
            findings.add(path, "num_samples_mismatch", f"{counted} is {n} but "
                         f"{', '.join(wrong[:5])} {'have' if len(wrong) > 1 else 'has'} "
                         f"{_steps(demo[wrong[0]])} rows", item=key)
        if schema != "seed":
            steps = n
    if obs is not None and actions is not None:
        obs_lengths = {_steps(ds) for _, ds in obs_datasets}
        n_act = _steps(actions)
        expected = n_act + 1 if schema == "seed" else n_act
        convention = "n+1 observations" if schema == "seed" else "equal lengths"
        for n_obs in sorted(obs_lengths):
            if n_obs != expected:
                findings.add(path, "obs_action_count", f"{n_obs} observations for {n_act} actions "
                             f"({convention} expected)", item=key, severity="warning")
    return steps


def _check_masks(f: h5py.File, demos: set[str], path: Path, findings: Findings) -> None:
    masks = f.get("mask")
    if not isinstance(masks, h5py.Group):
        return
    for name in sorted(masks.keys()):
        ds = masks[name]
        if not isinstance(ds, h5py.Dataset):
            continue
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.asarray(ds[()]).ravel()]
        if not names:
            findings.add(path, "empty_mask", f"mask/{name} lists no demos", severity="warning")
        for i, demo in enumerate(names):
            if demo not in demos:
                findings.add(path, "mask_missing_demo", f"mask/{name}[{i}] lists {demo}, "
                             "which does not exist", item=demo, severity="warning")
