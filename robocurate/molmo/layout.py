"""Where MolmoSpaces files live and how they are named (reference part 1.1)."""

from __future__ import annotations

import re
from pathlib import Path

SPLITS = ("train", "val", "test")
INDEX_NAME = "valid_trajectory_index.json"
AGGREGATE_NAME = "aggregated_statistics.json"
# The original calculate_stats.py writes this name although its doc says the one above;
# both are written so consumers of either keep working.
AGGREGATE_ALIAS = "aggregated_stats.json"
SENSOR_DATA_WIDTH = 100


def natural_key(text: str) -> list:
    """Sort house_2 before house_10 and traj_9 before traj_10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def split_dirs(root: Path) -> list[Path]:
    """The split directories to process: train/val/test under a dataset root, else ROOT itself."""
    root = Path(root)
    found = [root / s for s in SPLITS if (root / s).is_dir()]
    return found or [root]


def data_files(split_dir: Path) -> list[Path]:
    """Every trajectory file under a split dir, in a deterministic order.

    The original globs ``**/traj*.h5``; temp files of our own atomic writes are hidden
    (dot-prefixed) and so never match.
    """
    files = [p for p in Path(split_dir).rglob("traj*.h5") if p.is_file()]
    return sorted(files, key=lambda p: natural_key(str(p.relative_to(split_dir))))


def batch_suffix(h5_path: Path) -> str:
    """``trajectories_batch_2_of_5.h5`` -> ``batch_2_of_5`` (the original's exact rule)."""
    name = Path(h5_path).name
    return name.split("_", 1)[1][: -len(".h5")] if "_" in name else name[: -len(".h5")]


def video_name(traj_idx: int, camera: str, suffix: str) -> str:
    return f"episode_{traj_idx:08d}_{camera}_{suffix}.mp4"


def traj_index(key: str) -> int:
    """``traj_12`` -> 12; raises ValueError for anything else."""
    return int(key.split("_")[-1])
