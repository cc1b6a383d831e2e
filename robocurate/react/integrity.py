"""Integrity of raw ReAct episode files (``episode_NNN.h5``, reference section 1.1).

``check_episode`` reports data problems as findings and never raises for them:

- ``unreadable_file``: HDF5 cannot open the file (truncated copy, not HDF5, missing);
- ``missing_modality``: a required per-frame dataset is absent (``timestamps``,
  ``realsense/cam{0,1,2}/{color,depth}``, ``gelsight/{left,right}/frames``);
- ``frame_count_mismatch``: a per-frame dataset's first dimension differs from
  ``len(timestamps)``.

OptiTrack streams are not per-frame (~120 Hz, flushed at episode end) and may be empty:
an empty ``optitrack/sensor_{side}`` means that side was not active (single-sided
recording), which is valid. ``active_sensors`` lists the sides with N > 0 samples.

``quarantine`` moves a bad file aside (``X.h5`` -> ``X.h5.corrupt``), never deleting it.

Pure library: no Prefect.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py

from robocurate.findings import Findings

__all__ = [
    "PER_FRAME_DATASETS",
    "RULE_IDS",
    "SENSOR_SIDES",
    "check_episode",
    "discover_episodes",
    "quarantine",
]

RULE_IDS = ("unreadable_file", "missing_modality", "frame_count_mismatch")
SENSOR_SIDES = ("left", "right")
PER_FRAME_DATASETS: tuple[str, ...] = (
    "timestamps",
    *(f"realsense/cam{c}/{k}" for c in range(3) for k in ("color", "depth")),
    *(f"gelsight/{side}/frames" for side in SENSOR_SIDES),
)
QUARANTINE_SUFFIX = ".corrupt"


def check_episode(path: str | os.PathLike) -> dict:
    """Integrity verdict of one raw episode file.

    Returns ``{"path", "ok", "frames", "active_sensors", "findings"}``: ``frames`` is
    ``len(timestamps)`` (None when unknown), ``findings`` a list of finding dicts
    (``path, rule, message, item=None, severity="error"``); ``ok`` iff no findings.
    """
    path = Path(path)
    findings = Findings()
    frames: int | None = None
    active: list[str] = []
    try:
        f = h5py.File(path, "r")
    except OSError as exc:  # FileNotFoundError included
        findings.add(path, "unreadable_file", f"cannot open as HDF5: {exc}")
    else:
        try:
            with f:
                frames, active = _inspect(f, path, findings)
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            # Corrupt metadata that only shows when an object is touched.
            findings.add(path, "unreadable_file", f"cannot read HDF5 structure: {exc}")
    return {
        "path": str(path),
        "ok": len(findings) == 0,
        "frames": frames,
        "active_sensors": active,
        "findings": findings.to_list(),
    }


def _inspect(f: h5py.File, path: Path, findings: Findings) -> tuple[int | None, list[str]]:
    counts: dict[str, int] = {}
    missing: list[str] = []
    for name in PER_FRAME_DATASETS:
        obj = f.get(name)
        if not isinstance(obj, h5py.Dataset) or obj.ndim < 1:
            missing.append(name)
        else:
            counts[name] = int(obj.shape[0])
    if missing:
        findings.add(path, "missing_modality", "missing required dataset(s): "
                     + ", ".join(missing))
    frames = counts.get("timestamps")
    if frames is not None:
        off = {k: n for k, n in counts.items() if n != frames}
        if off:
            listing = ", ".join(f"{k}={n}" for k, n in counts.items())
            findings.add(path, "frame_count_mismatch",
                         f"per-frame datasets disagree with timestamps ({frames} frames): "
                         + listing)
    active = [side for side in SENSOR_SIDES if _stream_len(f, f"optitrack/sensor_{side}") > 0]
    return frames, active


def _stream_len(f: h5py.File, group: str) -> int:
    """Samples in an OptiTrack stream (min of timestamps and pose rows; 0 if absent)."""
    lens = []
    for key in ("timestamps", "pose"):
        obj = f.get(f"{group}/{key}")
        if not isinstance(obj, h5py.Dataset) or obj.ndim < 1:
            return 0
        lens.append(int(obj.shape[0]))
    return min(lens)


def quarantine(path: str | os.PathLike) -> Path:
    """Rename ``X.h5`` to ``X.h5.corrupt`` (``.corrupt.1``, ``.corrupt.2``... if taken).

    Never deletes or overwrites anything; returns the new path.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    base = path.name + QUARANTINE_SUFFIX
    n = 0
    while True:
        target = path.with_name(base if n == 0 else f"{base}.{n}")
        if not os.path.lexists(target):
            try:
                os.link(path, target)  # fails if target appeared meanwhile: no overwrite
            except FileExistsError:
                pass
            except OSError:  # filesystem without hard links
                os.rename(path, target)
                return target
            else:
                os.unlink(path)
                return target
        n += 1


def discover_episodes(root: str | os.PathLike, task: str, date: str) -> list[Path]:
    """Sorted ``root/data/<task>/<date>/episode_*.h5`` (quarantined and temp files skipped)."""
    ep_dir = Path(root) / "data" / task / date
    if not ep_dir.is_dir():
        return []
    return sorted(p for p in ep_dir.glob("episode_*.h5") if p.is_file())
