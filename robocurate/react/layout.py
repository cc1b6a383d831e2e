"""Where things are in a React dataset, and the raw-file facts every stage shares.

Dataset ROOT (reference ``react-tactile-and-owa.md`` 1.1, 1.2, 1.7)::

    data/<task>/<date>/episode_NNN.h5             raw recordings
    processed/<mode>/<task>/<date>/episode_NNN.pt contact index (mode default mode1_v1)
    figures/dataset_figures/                      breakdown JSON, CSV, summary PNGs
    figures/episode_previews/<task>/<date>/       gallery GIFs
    tasks.json                                    per-date notes incl. active_sensors

Pure library: no Prefect.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = [
    "CAMERA_SIDE",
    "DEFAULT_MODE",
    "DISPLAY_ORDER",
    "FPS",
    "OT_BODIES",
    "SIDES",
    "active_sensors_of",
    "cam_aligned_index",
    "cam_aligned_pose",
    "episode_key",
    "pt_path",
]

FPS = 30.0
DEFAULT_MODE = "mode1_v1"
SIDES = ("left", "right")
OT_BODIES = ("motherboard", "sensor_left", "sensor_right")
# H5 camera index -> placement; the panel shows left | middle | right = cam1, cam2, cam0.
CAMERA_SIDE = {0: "right", 1: "left", 2: "middle"}
DISPLAY_ORDER = (1, 2, 0)


def episode_key(h5_path: str | Path) -> str:
    """``<date>/episode_NNN``: the key episodes have in bad_frames.json and friends."""
    p = Path(h5_path)
    name = p.name
    for suffix in (".corrupt", ".h5", ".pt"):
        name = name.removesuffix(suffix)
    return f"{p.parent.name}/{name}"


def pt_path(root: str | Path, task: str, date: str, episode: str,
            mode: str = DEFAULT_MODE) -> Path:
    """The contact-index output for ``episode`` (``episode_NNN`` or its .h5 name)."""
    stem = Path(episode).name.removesuffix(".h5")
    return Path(root) / "processed" / mode / task / date / f"{stem}.pt"


def active_sensors_of(h5file) -> list[str]:
    """Sides whose OptiTrack stream is non-empty (an empty stream = an inactive side)."""
    active = []
    for side in SIDES:
        ds = h5file.get(f"optitrack/sensor_{side}/timestamps")
        if ds is not None and ds.shape and ds.shape[0] > 0:
            active.append(side)
    return active


def cam_aligned_index(cam_ts: np.ndarray, ot_ts: np.ndarray) -> np.ndarray:
    """Per camera tick, the index of the nearest OptiTrack sample (ties to the earlier).

    ``viz.cam_aligned_pose``: idx = searchsorted, clipped to [1, N-1]; take idx when its
    distance is strictly smaller, else idx-1. ``ot_ts`` must be non-empty.
    """
    n = len(ot_ts)
    if n == 1:
        return np.zeros(len(cam_ts), dtype=np.int64)
    idx = np.clip(np.searchsorted(ot_ts, cam_ts), 1, n - 1)
    left = np.abs(cam_ts - ot_ts[idx - 1])
    right = np.abs(ot_ts[idx] - cam_ts)
    return np.where(right < left, idx, idx - 1).astype(np.int64)


def cam_aligned_pose(cam_ts: np.ndarray, ot_ts: np.ndarray, ot_pose: np.ndarray) -> np.ndarray:
    """(T, 7) float32 pose per camera tick; zeros when the stream is empty (inactive side)."""
    if len(ot_ts) == 0:
        return np.zeros((len(cam_ts), 7), dtype=np.float32)
    return np.asarray(ot_pose, dtype=np.float64)[cam_aligned_index(cam_ts, ot_ts)].astype(
        np.float32)
