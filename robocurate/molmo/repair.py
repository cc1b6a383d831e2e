"""Stage 1: fill ``traj_i/obs/sensor_data/{camera}`` with episode video filenames.

The generator writes the MP4s but leaves ``obs/sensor_data`` empty (MolmoSpaces #286);
downstream readers need the names there. Rules follow scripts/data/repair_video_paths.py,
except that a missing RGB video is a finding for that trajectory instead of an assert.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robocurate.findings import Findings
from robocurate.molmo.layout import SENSOR_DATA_WIDTH, batch_suffix, traj_index, video_name


def encode_filename(name: str) -> np.ndarray:
    raw = name.encode("utf-8")
    if len(raw) > SENSOR_DATA_WIDTH:
        raise ValueError(f"video filename longer than {SENSOR_DATA_WIDTH} bytes: {name}")
    out = np.zeros(SENSOR_DATA_WIDTH, dtype=np.uint8)
    out[: len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    return out


def decode_filename(data) -> str:
    return np.asarray(data).tobytes().decode("utf-8").rstrip("\x00")


def plan_repairs(h5, h5_path: Path, overwrite: bool, findings: Findings) -> dict[str, str]:
    """Which ``sensor_data`` entries to write: {dataset path: video filename}."""
    h5_path = Path(h5_path)
    suffix = batch_suffix(h5_path)
    plan: dict[str, str] = {}
    for key in h5.keys():
        if not key.startswith("traj_"):
            continue
        try:
            idx = traj_index(key)
            obs = h5[key]["obs"]
        except (ValueError, KeyError):
            continue  # reported by validation
        existing = set(obs["sensor_data"].keys()) if "sensor_data" in obs else set()
        if existing and not overwrite:
            continue
        if "sensor_param" not in obs:
            findings.add(h5_path, "no_cameras", "obs/sensor_param is missing; no video to link",
                         item=key, severity="warning")
            continue
        for camera in obs["sensor_param"].keys():
            if camera not in existing:
                name = video_name(idx, camera, suffix)
                if (h5_path.parent / name).is_file():
                    plan[f"{key}/obs/sensor_data/{camera}"] = name
                else:
                    findings.add(h5_path, "repair_video_missing",
                                 f"RGB video {name} not found, not linked", item=key,
                                 severity="warning")
            depth = f"{camera}_depth"
            if depth not in existing:
                name = video_name(idx, depth, suffix)
                if (h5_path.parent / name).is_file():
                    plan[f"{key}/obs/sensor_data/{depth}"] = name
    return plan


def apply_repairs(h5w, plan: dict[str, str]) -> None:
    for path, name in plan.items():
        h5w.create_dataset(path, data=encode_filename(name))
