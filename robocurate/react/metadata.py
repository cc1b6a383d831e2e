"""``tasks.json``: the per-task, per-date registry of a React dataset (seed Stage 8, ref 1.7.1).

``update_tasks_json`` records one recording session::

    {"tasks": {"<task>": {
        "dates": [..., "<date>"],                       # sorted, no duplicates
        "n_episode_files": <episode_*.h5 under data/<task>/*/>,
        "n_frames": <sum over dates>, "duration_min": <sum over dates, 1 dp>,
        "per_date_notes": {"<date>": {
            "kind": "session", "active_sensors": ["left", "right"],
            "note": "bimanual; 12 episodes, 6.1 min; ...",   # a person's note is kept
            "auto_note": "<the generated summary>",
            "n_episodes": 12, "n_frames": 10980, "duration_s": 366.0}}}}}

What a person wrote is never overwritten: unknown fields anywhere are kept; ``kind`` and
``active_sensors`` are only filled in when missing (``active_sensors`` given explicitly,
e.g. by ``--active-sensors``, does replace the stored value); ``note`` is replaced only
while it still equals the previous generated ``auto_note`` (nobody edited it). The
counts are what the dataset card's "At a glance" line needs (seed Stage 9).

Written atomically under a lock file. A ``tasks.json`` that is not valid JSON is an error
(:class:`TasksJsonError`): it holds hand-written notes, so it is never replaced blindly.

Pure library: no Prefect.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from robocurate.io.atomic import atomic_write_json, locked_dir
from robocurate.react.layout import FPS, SIDES

__all__ = ["TASKS_JSON", "TasksJsonError", "session_note", "update_tasks_json"]

TASKS_JSON = "tasks.json"


class TasksJsonError(ValueError):
    """tasks.json exists but cannot be used (not JSON, or not the expected shape)."""


def update_tasks_json(root: str | os.PathLike, task: str, date: str,
                      episodes: list[dict], *, active_sensors: list[str] | None = None) -> Path:
    """Record ``date`` of ``task`` from its episode manifests; returns the tasks.json path.

    ``episodes``: detect manifests (``key``, ``status``, ``n_frames``, ``active_sensors``,
    ``skipped``, ``intervals``, ``freeze_events``, ``drift``) or integrity results
    (``path``, ``frames``, ``active_sensors``); missing fields are simply not summarised.
    """
    root = Path(root)
    path = root / TASKS_JSON
    with locked_dir(root):
        doc = _load(path)
        tasks = _obj(doc, "tasks", path)
        entry = _obj(tasks, task, path)
        dates = entry.get("dates")
        if not isinstance(dates, list):
            dates = []
        entry["dates"] = sorted({*map(str, dates), date})
        notes = _obj(entry, "per_date_notes", path)
        block = _obj(notes, date, path)

        data_active = _data_active(episodes)
        block.setdefault("kind", "session")
        if active_sensors is not None:
            block["active_sensors"] = [s for s in SIDES if s in active_sensors]
        elif not isinstance(block.get("active_sensors"), list):
            block["active_sensors"] = data_active
        auto = session_note(episodes, declared=block["active_sensors"])
        if not block.get("note") or block.get("note") == block.get("auto_note"):
            block["note"] = auto
        block["auto_note"] = auto
        n_frames = sum(_frames(e) or 0 for e in episodes)
        block["n_episodes"] = len(episodes)
        block["n_frames"] = n_frames
        block["duration_s"] = round(n_frames / FPS, 1)

        entry["n_episode_files"] = _count_episode_files(root, task)
        dated = [b for b in notes.values() if isinstance(b, dict)
                 and isinstance(b.get("n_frames"), int)]
        total = sum(b["n_frames"] for b in dated)
        entry["n_frames"] = total
        entry["duration_min"] = round(total / FPS / 60.0, 1)
        atomic_write_json(path, doc)
    return path


def session_note(episodes: list[dict], declared: list[str] | None = None) -> str:
    """One line: sensors, size, and which episodes have which failure, e.g.
    ``bimanual; 3 episodes, 0.2 min; OT freeze in episode_002 (ot_loss); ...``."""
    active = declared if declared is not None else _data_active(episodes)
    parts = ["bimanual" if set(SIDES) <= set(active) else
             f"single-sided ({', '.join(active)})" if active else "no active sensor"]
    data = _data_active(episodes)
    if declared is not None and episodes and sorted(data) != sorted(declared):
        parts.append(f"OptiTrack data for: {', '.join(data) or 'none'}")
    frames = sum(_frames(e) or 0 for e in episodes)
    parts.append(f"{len(episodes)} episode{'s' * (len(episodes) != 1)}, "
                 f"{frames / FPS / 60.0:.1f} min")

    freezes, spikes, teleports, drift, failed = [], [], [], [], []
    for e in episodes:
        name = _name(e)
        if e.get("status") == "failed":
            failed.append(name)
            continue
        verdicts: dict[str, int] = {}
        for ev in e.get("freeze_events") or []:
            verdicts[ev.get("verdict")] = verdicts.get(ev.get("verdict"), 0) + 1
        if verdicts:
            freezes.append(f"{name} (" + ", ".join(
                f"{v}" + (f" x{n}" if n > 1 else "") for v, n in sorted(verdicts.items())) + ")")
        iv = e.get("intervals") or {}
        if iv.get("intensity_spikes"):
            spikes.append(name)
        if iv.get("pose_teleports_L") or iv.get("pose_teleports_R"):
            teleports.append(name)
        sides = [s for s in SIDES if ((e.get("drift") or {}).get(f"drift_{s}") or 0) > 5.0]
        if sides:
            drift.append(f"{name} ({', '.join(sides)})")
    if freezes:
        parts.append(f"OT freeze{'s' * (len(freezes) > 1)} in {', '.join(freezes)}")
    if spikes:
        parts.append(f"LED intensity spikes in {', '.join(spikes)}")
    if teleports:
        parts.append(f"pose teleports in {', '.join(teleports)}")
    if drift:
        parts.append(f"reference drift > 5 in {', '.join(drift)}")
    if failed:
        parts.append(f"detection failed for {', '.join(failed)}")
    if not (freezes or spikes or teleports or drift or failed) and any(
            e.get("status") == "detected" for e in episodes):
        parts.append("no failures detected")
    return "; ".join(parts)


# =========================================================================== helpers


def _frames(e: dict) -> int | None:
    for k in ("n_frames", "frames"):
        if isinstance(e.get(k), int):
            return e[k]
    return None


def _name(e: dict) -> str:
    key = e.get("key") or e.get("path") or "?"
    return Path(str(key)).name.removesuffix(".h5")


def _data_active(episodes: list[dict]) -> list[str]:
    seen = {s for e in episodes for s in e.get("active_sensors") or []}
    return [s for s in SIDES if s in seen]


def _count_episode_files(root: Path, task: str) -> int:
    data = root / "data" / task
    n = sum(1 for _ in data.glob("*/episode_*.h5")) if data.is_dir() else 0
    if n == 0:  # a processed-only copy of the dataset: count the contact-index files
        n = sum(1 for _ in (root / "processed").glob(f"*/{task}/*/episode_*.pt"))
    return n


def _load(path: Path) -> dict:
    if not path.exists():
        return {"tasks": {}}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TasksJsonError(f"{path}: not readable JSON ({exc}); fix or remove it - it "
                             f"holds hand-written notes, so it is not overwritten") from None
    if not isinstance(doc, dict):
        raise TasksJsonError(f"{path}: top level is {type(doc).__name__}, not an object")
    return doc


def _obj(parent: dict, key: str, path: Path) -> dict:
    value = parent.setdefault(key, {})
    if not isinstance(value, dict):
        raise TasksJsonError(f"{path}: {key!r} is {type(value).__name__}, not an object")
    return value


