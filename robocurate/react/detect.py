"""Failure detection for React episodes: the interval detector behind ``bad_frames.json``.

Reference ``react-tactile-and-owa.md`` 1.5.1 (and the seed's Stage 5). Every detector
works on the camera-aligned, trimmed per-frame arrays of the contact-index ``.pt``
(indices are trimmed-pt frame coordinates, intervals ``[a, b]`` inclusive):

- ``intensity_spikes`` (mode ``gelsight_led_flicker``): a frame is flagged when either
  side's mean-L2 intensity exceeds 30 (absolute, the published detector); with
  ``spike_rule="p999"`` the seed's wording is used instead (``intensity - p99.9 > 30``
  per side). Single-frame events, padded by 3 frames, merged. Both sides always.
- ``pose_teleports_{L,R}`` (active sides only): a frame pair whose translational speed
  exceeds 5 m/s AND whose angular speed exceeds 15 rad/s (both at 30 Hz). AND, not OR:
  a fast hand moves quickly but does not also spin at > 860 deg/s in one frame; a
  solver flip onto the wrong marker set does both. Events ``(i, i+1)``, padded by 3, merged.
- ``ot_loss_{L,R}`` (active sides only): runs of bit-identical poses (every component
  within 1e-7 of the previous frame) of at least round(0.25 s * 30) = 8 frames counting the
  anchor frame; not padded, merged.

``total_bad_frames`` is the size of the union of all intervals, ``bad_fraction`` that over
T rounded to 4 places, and the clean segments are the complement's runs of >= 16 frames.

``detect_episode`` ties it together for one episode: reads the ``.pt`` lazily (memory
mapped: the thumbnails are never read), checks the inputs, runs the detectors and the
freeze diagnosis (:mod:`robocurate.react.freeze`, which reads the raw OptiTrack streams
and a bounded sample of frames from the ``.h5``). Data problems become findings and
``status="failed"``; it never raises for data.

Pure library: no Prefect.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from robocurate.findings import Findings
from robocurate.react.layout import FPS, SIDES, active_sensors_of, episode_key

__all__ = [
    "BUFFER_FRAMES",
    "EPS_POSE_BIT",
    "FREEZE_THRESHOLD_S",
    "MIN_SEGMENT_FRAMES",
    "MODES",
    "RULE_IDS",
    "SPIKE_RULES",
    "TAU_ANGULAR_RAD_PS",
    "TAU_INTENSITY",
    "TAU_OPT_GAP_S",
    "TAU_VELOCITY_MPS",
    "angular_speed",
    "bad_mask",
    "clean_segments",
    "detect_episode",
    "freeze_runs",
    "intensity_spikes",
    "merge_intervals",
    "ot_loss",
    "pad_and_merge",
    "pose_teleports",
    "translational_speed",
    "union_count",
]

TAU_INTENSITY = 30.0
TAU_VELOCITY_MPS = 5.0
TAU_ANGULAR_RAD_PS = 15.0
FREEZE_THRESHOLD_S = 0.25
TAU_OPT_GAP_S = 0.1  # recorded in the bad_frames.json header; used by the diagnosis
BUFFER_FRAMES = 3
EPS_POSE_BIT = 1e-7
MIN_SEGMENT_FRAMES = 16
SPIKE_RULES = ("absolute", "p999")

MODES = ("intensity_spikes", "pose_teleports_L", "pose_teleports_R", "ot_loss_L", "ot_loss_R")
_SIDE_SUFFIX = {"left": "L", "right": "R"}

# Finding rules of detect_episode. Data problems that stop detection are errors; what the
# detectors find in good data is reported as warnings, skipped sides as info.
RULE_IDS = (
    "missing_pt", "unreadable_pt", "bad_pt_schema", "unreadable_file", "missing_modality",
    "frame_count_mismatch", "empty_episode", "nan_pose", "zero_norm_quaternion",
    "nan_intensity", "unsorted_ot_timestamps", "active_sensors_mismatch",
    "pt_timestamps_differ", "sensor_inactive", "contact_drift", *MODES, "pose_freeze",
)

_PT_KEYS = ("timestamps", "tactile_left_intensity", "tactile_right_intensity",
            "sensor_left_pose", "sensor_right_pose", "_contact_meta")
_CAMERAS = tuple(f"realsense/cam{c}/color" for c in range(3))


# =========================================================================== intervals


def merge_intervals(intervals: Iterable, max_gap: int = 0) -> list[list[int]]:
    """Sort inclusive ``[a, b]`` intervals and merge those that overlap or touch.

    Two intervals merge when ``a <= prev_b + 1 + max_gap``: ``max_gap=0`` merges touching
    intervals (1.5.1); the freeze diagnosis uses ``max_gap=1`` (``a - prev_b <= 2``).
    """
    ordered = sorted((int(a), int(b)) for a, b in intervals)
    merged: list[list[int]] = []
    for a, b in ordered:
        if merged and a <= merged[-1][1] + 1 + max_gap:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged


def pad_and_merge(intervals: Iterable, T: int, pad: int) -> list[list[int]]:
    """Widen each interval by ``pad`` frames on both sides, clip to ``[0, T-1]``, merge."""
    if T <= 0:
        return []
    return merge_intervals((max(0, int(a) - pad), min(T - 1, int(b) + pad))
                           for a, b in intervals)


def bad_mask(interval_lists: Iterable[Iterable], T: int) -> np.ndarray:
    """(T,) bool: frames covered by any interval of any list."""
    mask = np.zeros(max(T, 0), dtype=bool)
    for intervals in interval_lists:
        for a, b in intervals:
            mask[max(0, int(a)):min(T, int(b) + 1)] = True
    return mask


def union_count(interval_lists: Iterable[Iterable], T: int) -> int:
    """Number of frames covered by the union of all intervals (frames counted once)."""
    return int(bad_mask(interval_lists, T).sum())


def clean_segments(interval_lists: Iterable[Iterable], T: int,
                   min_frames: int = MIN_SEGMENT_FRAMES) -> list[list[int]]:
    """Runs of frames outside every bad interval, ``[a, b]`` inclusive, >= ``min_frames``."""
    good = ~bad_mask(interval_lists, T)
    return [[a, b] for a, b in _runs(good) if b - a + 1 >= min_frames]


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive index ranges of the True runs of a 1-D bool array."""
    if flags.size == 0:
        return []
    edges = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return [(int(a), int(b)) for a, b in zip(starts, ends)]


# =========================================================================== detectors


def intensity_spikes(intensity_left, intensity_right, *, tau: float = TAU_INTENSITY,
                     buffer: int = BUFFER_FRAMES, rule: str = "absolute") -> list[list[int]]:
    """LED-flicker frames of either GelSight, padded by ``buffer`` and merged.

    ``rule="absolute"``: ``intensity > tau`` (the published detector).
    ``rule="p999"``: ``intensity - percentile(intensity, 99.9) > tau`` per side (the seed's
    wording; it only flags a spike standing far above the side's own upper tail).
    """
    if rule not in SPIKE_RULES:
        raise ValueError(f"spike rule must be one of {SPIKE_RULES}, got {rule!r}")
    sides = [np.asarray(x, dtype=np.float64).reshape(-1)
             for x in (intensity_left, intensity_right)]
    T = len(sides[0])
    flag = np.zeros(T, dtype=bool)
    for x in sides:
        if x.size == 0:
            continue
        base = float(np.percentile(x, 99.9)) if rule == "p999" else 0.0
        flag |= (x - base) > tau
    return pad_and_merge(((i, i) for i in np.flatnonzero(flag)), T, buffer)


def translational_speed(pose, fps: float = FPS) -> np.ndarray:
    """(T-1,) m/s between consecutive frames: ``|delta xyz| * fps``."""
    p = np.asarray(pose, dtype=np.float64)
    return np.linalg.norm(np.diff(p[:, :3], axis=0), axis=1) * fps


def angular_speed(pose, fps: float = FPS) -> np.ndarray:
    """(T-1,) rad/s between consecutive frames: ``2 acos(|q_t . q_t+1|) * fps``.

    Quaternions are normalised first (norm clamped at 1e-12); the absolute value of the dot
    product makes q and -q (the same rotation) read as no rotation.
    """
    q = np.asarray(pose, dtype=np.float64)[:, 3:7]
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    dot = np.abs(np.einsum("ij,ij->i", q[:-1], q[1:]))
    return 2.0 * np.arccos(np.clip(dot, -1.0, 1.0)) * fps


def pose_teleports(pose, *, fps: float = FPS, tau_velocity: float = TAU_VELOCITY_MPS,
                   tau_angular: float = TAU_ANGULAR_RAD_PS,
                   buffer: int = BUFFER_FRAMES) -> list[list[int]]:
    """Frame pairs moving both too far AND rotating too fast, padded and merged."""
    p = np.asarray(pose)
    T = len(p)
    if T < 2:
        return []
    flag = (translational_speed(p, fps) > tau_velocity) & (angular_speed(p, fps) > tau_angular)
    return pad_and_merge(((i, i + 1) for i in np.flatnonzero(flag)), T, buffer)


def freeze_runs(pose, *, fps: float = FPS, threshold_s: float = FREEZE_THRESHOLD_S,
                eps: float = EPS_POSE_BIT) -> list[list[int]]:
    """Runs of bit-identical poses lasting >= ``threshold_s``, unmerged.

    Frame t is "same" when every component differs from frame t-1 by less than ``eps``.
    A run of same frames i..j-1 plus its anchor i-1 is the interval ``[i-1, j-1]``; it is
    kept when it spans at least ``round(threshold_s * fps)`` frames, anchor included.
    """
    p = np.asarray(pose, dtype=np.float64)
    if len(p) < 2:
        return []
    min_frames = int(round(threshold_s * fps))
    same = np.zeros(len(p), dtype=bool)
    same[1:] = np.all(np.abs(np.diff(p, axis=0)) < eps, axis=1)
    return [[i - 1, j] for i, j in _runs(same) if j - (i - 1) + 1 >= min_frames]


def ot_loss(pose, *, fps: float = FPS, threshold_s: float = FREEZE_THRESHOLD_S) -> list[list[int]]:
    """The ``ot_loss_{L,R}`` intervals: freeze runs, not padded, merged when touching."""
    return merge_intervals(freeze_runs(pose, fps=fps, threshold_s=threshold_s))


# =========================================================================== one episode


def detect_episode(h5_path: str | os.PathLike, pt_path: str | os.PathLike, *,
                   active_sensors: list[str] | None = None, spike_rule: str = "absolute",
                   diagnose: bool = True) -> dict:
    """Run every detector on one episode; a small JSON-able manifest, never raises for data.

    ``active_sensors`` (e.g. from ``tasks.json`` or ``--active-sensors``) can only narrow
    the sides the data shows as active (non-empty OptiTrack stream): a side without OT data
    has no pose to check. Returns ``{path, pt_path, key, status ("detected"|"failed"),
    n_frames, pre_trim_n_frames, trim_offset, active_sensors, skipped, intervals{MODES},
    total_bad_frames, bad_fraction, clean_segments, freeze_events, drift, findings}``.
    """
    h5_path, pt_path = Path(h5_path), Path(pt_path)
    findings = Findings()
    result: dict = {
        "path": str(h5_path),
        "pt_path": str(pt_path),
        "key": episode_key(h5_path),
        "status": "failed",
        "n_frames": None,
        "pre_trim_n_frames": None,
        "trim_offset": None,
        "active_sensors": [],
        "skipped": [],
        "intervals": {m: [] for m in MODES},
        "total_bad_frames": None,
        "bad_fraction": None,
        "clean_segments": [],
        "freeze_events": [],
        "drift": {},
        "findings": [],
    }
    try:
        _detect_into(result, findings, h5_path, pt_path, active_sensors, spike_rule, diagnose)
    except _Stop:
        result["status"] = "failed"
    result["findings"] = findings.to_list()
    return result


class _Stop(Exception):
    """Internal: a finding that makes detection impossible was recorded."""


def _detect_into(result: dict, findings: Findings, h5_path: Path, pt_path: Path,
                 declared: list[str] | None, spike_rule: str, diagnose: bool) -> None:
    if spike_rule not in SPIKE_RULES:
        raise ValueError(f"spike_rule must be one of {SPIKE_RULES}, got {spike_rule!r}")
    ep = _load_pt(pt_path, findings)
    meta = ep["_contact_meta"]
    T, trim, pre_trim = _check_pt(ep, meta, pt_path, findings)
    result.update(n_frames=T, pre_trim_n_frames=pre_trim, trim_offset=trim)
    result["drift"] = {k: _float(meta[k]) for k in ("drift_left", "drift_right")
                       if k in meta and _float(meta[k]) is not None}

    import h5py  # local: keeps the pure interval helpers importable without HDF5
    import hdf5plugin  # noqa: F401  registers BLOSC: files not yet through compress use it

    try:
        h5 = h5py.File(h5_path, "r")
    except OSError as exc:
        findings.add(h5_path, "unreadable_file", f"cannot open as HDF5: {exc}")
        raise _Stop from None
    with h5:
        try:
            active, ot = _check_h5(h5, h5_path, ep, meta, T, trim, pre_trim, declared,
                                   result, findings)
            result["active_sensors"] = active
            intervals = _run_detectors(ep, active, spike_rule)
            result["intervals"] = intervals
            lists = list(intervals.values())
            total = union_count(lists, T)
            result["total_bad_frames"] = total
            result["bad_fraction"] = round(total / T, 4)
            result["clean_segments"] = clean_segments(lists, T)
            if diagnose:
                from robocurate.react import freeze  # freeze builds on this module

                poses = {s: ep[f"sensor_{s}_pose"] for s in active}
                result["freeze_events"] = freeze.diagnose_episode(
                    h5, poses, ot, trim=trim, episode=result["key"])
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            # Corrupt chunks or metadata that only show when the data is touched.
            findings.add(h5_path, "unreadable_file", f"cannot read HDF5 data: {exc}")
            raise _Stop from None
    _report(result, findings, h5_path)
    result["status"] = "detected"


def _load_pt(pt_path: Path, findings: Findings) -> dict:
    if not pt_path.is_file():
        findings.add(pt_path, "missing_pt", "contact-index output is missing "
                     "(run the contact-index stage first)")
        raise _Stop
    import torch

    try:
        # mmap: tensors are mapped, not read, so the (T,3,128,128) thumbnails cost nothing.
        ep = torch.load(pt_path, weights_only=True, mmap=True, map_location="cpu")
    except Exception:  # noqa: BLE001 - e.g. a legacy (non-zip) file cannot be mapped
        try:
            ep = torch.load(pt_path, weights_only=True, map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
            findings.add(pt_path, "unreadable_pt", f"torch.load(weights_only=True) failed: "
                         f"{type(exc).__name__}: {exc}")
            raise _Stop from None
    if not isinstance(ep, dict):
        findings.add(pt_path, "bad_pt_schema", f"expected a dict, found {type(ep).__name__}")
        raise _Stop
    missing = [k for k in _PT_KEYS if k not in ep]
    if missing:
        findings.add(pt_path, "bad_pt_schema", f"missing keys: {', '.join(missing)}")
        raise _Stop
    if not isinstance(ep["_contact_meta"], dict):
        findings.add(pt_path, "bad_pt_schema", "_contact_meta is not a dict")
        raise _Stop
    return ep


def _check_pt(ep: dict, meta: dict, pt_path: Path, findings: Findings) -> tuple[int, int, int]:
    import torch

    for k in _PT_KEYS[:-1]:
        if not isinstance(ep[k], torch.Tensor):
            findings.add(pt_path, "bad_pt_schema", f"{k} is {type(ep[k]).__name__}, not a tensor")
            raise _Stop
    T = int(ep["timestamps"].shape[0]) if ep["timestamps"].ndim == 1 else -1
    shapes = {k: tuple(ep[k].shape) for k in _PT_KEYS[:-1]}
    want = {"timestamps": (T,), "tactile_left_intensity": (T,),
            "tactile_right_intensity": (T,), "sensor_left_pose": (T, 7),
            "sensor_right_pose": (T, 7)}
    bad = [f"{k}={shapes[k]}" for k in want if shapes[k] != want[k]]
    if T < 0 or bad:
        findings.add(pt_path, "frame_count_mismatch",
                     f"per-frame arrays disagree (want T={T}): {', '.join(bad) or 'timestamps'}")
        raise _Stop
    try:
        trim = int(meta["trim_offset"])
        pre_trim = int(meta["pre_trim_n_frames"])
    except (KeyError, TypeError, ValueError) as exc:
        findings.add(pt_path, "bad_pt_schema", f"_contact_meta needs integer trim_offset and "
                     f"pre_trim_n_frames: {type(exc).__name__}: {exc}")
        raise _Stop from None
    if trim < 0 or trim + T != pre_trim:
        findings.add(pt_path, "frame_count_mismatch", f"trim_offset={trim} + T={T} != "
                     f"pre_trim_n_frames={pre_trim}")
        raise _Stop
    if T == 0:
        findings.add(pt_path, "empty_episode", f"no frames left after trimming {trim}")
        raise _Stop
    for side in SIDES:
        x = ep[f"tactile_{side}_intensity"].numpy()
        if not np.all(np.isfinite(x)):
            n = int(np.sum(~np.isfinite(x)))
            findings.add(pt_path, "nan_intensity", f"tactile_{side}_intensity has {n} "
                         f"non-finite value(s)")
            raise _Stop
    return T, trim, pre_trim


def _check_h5(h5, h5_path: Path, ep: dict, meta: dict, T: int, trim: int, pre_trim: int,
              declared: list[str] | None, result: dict, findings: Findings):
    """Validate the raw file against the .pt; return (active sides, {side: (ts, pose)})."""
    needed = ("timestamps", *_CAMERAS, *(f"gelsight/{s}/frames" for s in SIDES))
    missing = [n for n in needed if not isinstance(h5.get(n), _dataset_type())]
    if missing:
        findings.add(h5_path, "missing_modality", f"missing dataset(s): {', '.join(missing)}")
        raise _Stop
    counts = {n: int(h5[n].shape[0]) if h5[n].shape else -1 for n in needed}
    bad = [f"{n}={c}" for n, c in counts.items() if c != pre_trim]
    if bad:
        findings.add(h5_path, "frame_count_mismatch", f"expected pre_trim_n_frames={pre_trim} "
                     f"frames: {', '.join(bad)}")
        raise _Stop
    cam_ts = h5["timestamps"][trim:]
    if not np.array_equal(cam_ts, ep["timestamps"].numpy()):
        findings.add(h5_path, "pt_timestamps_differ", "the .pt timestamps are not the raw "
                     "ones after trim_offset: the .pt may be stale", severity="warning")

    data_active = active_sensors_of(h5)
    pt_active = meta.get("active_sensors")
    if isinstance(pt_active, (list, tuple)) and sorted(pt_active) != sorted(data_active):
        findings.add(h5_path, "active_sensors_mismatch", f".pt says {list(pt_active)}, the "
                     f"OptiTrack streams say {data_active}; using sides active in both",
                     severity="warning")
        data_active = [s for s in data_active if s in pt_active]
    active = []
    for side in SIDES:
        if side not in data_active:
            why = ("declared active but its OptiTrack stream is empty"
                   if declared is not None and side in declared else "OptiTrack stream empty")
            findings.add(h5_path, "sensor_inactive", f"{side} sensor inactive ({why}): pose "
                         f"detectors skipped", item=side, severity="info")
            result["skipped"].append(side)
        elif declared is not None and side not in declared:
            findings.add(h5_path, "sensor_inactive", f"{side} sensor not in active_sensors "
                         f"{list(declared)}: pose detectors skipped", item=side,
                         severity="info")
            result["skipped"].append(side)
        else:
            active.append(side)

    ot = {}
    for side in active:
        ts = np.asarray(h5[f"optitrack/sensor_{side}/timestamps"][:], dtype=np.float64)
        pose = np.asarray(h5[f"optitrack/sensor_{side}/pose"][:], dtype=np.float64)
        if pose.ndim != 2 or pose.shape != (len(ts), 7):
            findings.add(h5_path, "frame_count_mismatch", f"optitrack/sensor_{side}: pose "
                         f"{pose.shape} vs timestamps ({len(ts)},)", item=side)
            raise _Stop
        _check_pose(pose, f"optitrack/sensor_{side}/pose", h5_path, side, findings)
        _check_pose(ep[f"sensor_{side}_pose"].numpy(), f"sensor_{side}_pose (.pt)",
                    Path(result["pt_path"]), side, findings)
        if not np.all(np.isfinite(ts)):
            findings.add(h5_path, "nan_pose", f"optitrack/sensor_{side}/timestamps has "
                         f"non-finite values", item=side)
            raise _Stop
        if np.any(np.diff(ts) < 0):
            findings.add(h5_path, "unsorted_ot_timestamps", f"optitrack/sensor_{side}/"
                         f"timestamps go backwards; samples sorted by time for the diagnosis",
                         item=side, severity="warning")
            order = np.argsort(ts, kind="stable")
            ts, pose = ts[order], pose[order]
        ot[side] = (ts, pose)
    return active, ot


def _check_pose(pose: np.ndarray, name: str, where: Path, side: str, findings: Findings) -> None:
    finite = np.isfinite(pose).all(axis=1)
    if not finite.all():
        findings.add(where, "nan_pose", f"{name}: {int((~finite).sum())} row(s) with NaN/inf, "
                     f"first at row {int(np.argmin(finite))}", item=side)
        raise _Stop
    norms = np.linalg.norm(np.asarray(pose, dtype=np.float64)[:, 3:7], axis=1)
    zero = norms < 1e-6
    if zero.any():
        findings.add(where, "zero_norm_quaternion", f"{name}: {int(zero.sum())} row(s) with a "
                     f"zero-norm quaternion, first at row {int(np.argmax(zero))}", item=side)
        raise _Stop


def _run_detectors(ep: dict, active: list[str], spike_rule: str) -> dict:
    intervals = {"intensity_spikes": intensity_spikes(
        ep["tactile_left_intensity"].numpy(), ep["tactile_right_intensity"].numpy(),
        rule=spike_rule)}
    for side in SIDES:
        suffix = _SIDE_SUFFIX[side]
        pose = ep[f"sensor_{side}_pose"].numpy()
        on = side in active
        intervals[f"pose_teleports_{suffix}"] = pose_teleports(pose) if on else []
        intervals[f"ot_loss_{suffix}"] = ot_loss(pose) if on else []
    return {m: intervals[m] for m in MODES}


def _report(result: dict, findings: Findings, h5_path: Path) -> None:
    for mode, ivs in result["intervals"].items():
        if ivs:
            n = union_count([ivs], result["n_frames"])
            findings.add(h5_path, mode, f"{len(ivs)} interval(s), {n} frame(s): "
                         f"{_short(ivs)}", severity="warning")
    for ev in result["freeze_events"]:
        findings.add(h5_path, "pose_freeze", f"{ev['side']} pose frozen frames "
                     f"{ev['a']}-{ev['b']} ({ev['length_s']:.2f} s): {ev['verdict']}",
                     item=ev["id"], severity="warning")
    for side in SIDES:
        d = result["drift"].get(f"drift_{side}")
        if d is not None and d > 5.0:
            findings.add(h5_path, "contact_drift", f"{side} reference drift {d:.2f} > 5.0: the "
                         f"gel moved between frame 0 and the p01 reference", item=side,
                         severity="warning")


def _short(intervals: list[list[int]], limit: int = 6) -> str:
    text = ", ".join(f"[{a}, {b}]" for a, b in intervals[:limit])
    return text + (f", ... ({len(intervals) - limit} more)" if len(intervals) > limit else "")


def _float(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def _dataset_type():
    import h5py

    return h5py.Dataset
