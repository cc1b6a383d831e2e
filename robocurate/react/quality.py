"""Dataset-level failure-detection outputs under ``figures/dataset_figures/`` (seed Stage 5).

From the per-episode manifests of :func:`robocurate.react.detect.detect_episode`:

- ``bad_frames.json`` (reference 1.7.2): thresholds, ``trim_offsets`` (episodes with a
  trim > 0), ``trim_note``, ``summary`` and ``episodes["<date>/episode_NNN"]`` with the five
  interval lists (trimmed-pt frame coordinates, inclusive), ``total_bad_frames`` and
  ``bad_fraction``. Merged by episode key: other dates' and other episodes' entries are
  kept; an episode whose detection failed this time loses its (now stale) entry. The keys
  have no task: an episode whose date and name another task under ROOT also has is a
  ``react.task_collision`` finding, never merged over the other's entry.
- ``freeze_intervals.json``: the freeze diagnosis (1.7.4 summary layout: ``threshold_s``,
  ``thresholds``, ``counts``, ``events``) where every event carries a stable ``id``
  (``<episode>:<side>:<a>-<b>``) and ``manual_verdict`` (null | keep | cut | merge), the
  operator's call from the per-event clips (seed Stage 7). Re-runs keep every manual
  verdict whose event is found again (same episode, side, a, b); a verdict whose event
  disappeared (e.g. after a re-trim) moves to ``orphaned_manual_verdicts``, never lost.
- ``data_quality_breakdown.json`` (1.7.3): per-mode frame totals over all episodes in
  ``bad_frames.json`` (``frames`` = per-episode union of the mode's intervals).
- ``data_quality_report.csv``: one row per episode for filtering (see ``CSV_COLUMNS``).

All four are rewritten atomically (temp file + fsync + rename) under a lock file, so two
runs for different dates cannot lose each other's entries. An existing output that is not
valid JSON is moved aside to ``<name>.corrupt-<UTC time>`` (reported), never overwritten
silently.

Pure library: no Prefect.
"""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from robocurate.findings import Findings
from robocurate.io.atomic import atomic_write_bytes, atomic_write_json, locked_dir
from robocurate.react import detect, freeze
from robocurate.react.layout import FPS, episode_key

__all__ = [
    "BAD_FRAMES_NAME",
    "BREAKDOWN_NAME",
    "CSV_COLUMNS",
    "FIGURES_DIR",
    "FREEZE_NAME",
    "MANUAL_VERDICTS",
    "REPORT_CSV_NAME",
    "set_verdict",
    "write_quality_outputs",
]

FIGURES_DIR = Path("figures") / "dataset_figures"
BAD_FRAMES_NAME = "bad_frames.json"
FREEZE_NAME = "freeze_intervals.json"
BREAKDOWN_NAME = "data_quality_breakdown.json"
REPORT_CSV_NAME = "data_quality_report.csv"
MANUAL_VERDICTS = ("keep", "cut", "merge")
TRIM_NOTE = ("Interval indices are in TRIMMED .pt frame coordinates: raw .h5 frame = index + "
             "trim_offsets[episode] (0 when the episode is not listed). Trimming drops the "
             "camera frames before every active sensor has OptiTrack data.")
OT_LOSS_NOTE = ("Runs of bit-identical poses >= freeze_threshold_s on active sensors; each run "
                "is diagnosed in freeze_intervals.json (ot_loss / pipeline_stall / real_still) "
                "from the OT gap, near-event OT speeds and camera/GelSight motion.")

CSV_COLUMNS = (
    "episode", "date", "status", "n_frames", "duration_s", "trim_offset", "active_sensors",
    "intensity_spike_frames", "pose_teleport_L_frames", "pose_teleport_R_frames",
    "ot_loss_L_frames", "ot_loss_R_frames", "total_bad_frames", "bad_fraction",
    "clean_segments", "clean_frames", "longest_clean_s",
    "freeze_events", "freeze_ot_loss", "freeze_pipeline_stall", "freeze_real_still",
    "freeze_ambiguous", "drift_left", "drift_right", "drift_warning", "note",
)
_MODE_COLUMNS = {"intensity_spikes": "intensity_spike_frames",
                 "pose_teleports_L": "pose_teleport_L_frames",
                 "pose_teleports_R": "pose_teleport_R_frames",
                 "ot_loss_L": "ot_loss_L_frames", "ot_loss_R": "ot_loss_R_frames"}


# =========================================================================== public API


def write_quality_outputs(root: str | os.PathLike, task: str, date: str,
                          results: list[dict]) -> dict:
    """Merge ``results`` (detect manifests) into the four dataset outputs under ``root``.

    Returns ``{"paths": {name: path}, "summary": {...}, "findings": [...]}``; the summary
    counts this batch (``detected``, ``failed``, ``freeze_events`` by verdict,
    ``manual_verdicts_kept``, ``orphaned_manual_verdicts``) and the dataset totals after
    the merge (``n_episodes``, ``total_frames``, ``total_bad_frames``, ...).
    """
    out_dir = Path(root) / FIGURES_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    findings = Findings()
    paths = {n: out_dir / n for n in (BAD_FRAMES_NAME, FREEZE_NAME, BREAKDOWN_NAME,
                                      REPORT_CSV_NAME)}
    # Every result needs its episode key; a manifest without one is keyed by its path.
    results = [r if r.get("key") else dict(r, key=episode_key(r["path"])) for r in results]
    with locked_dir(out_dir):
        old_bad = _load_json(paths[BAD_FRAMES_NAME], findings)
        old_freeze = _load_json(paths[FREEZE_NAME], findings)
        old_rows = _load_csv(paths[REPORT_CSV_NAME], findings)

        episodes = dict(old_bad.get("episodes") or {})
        results = _without_task_collisions(results, Path(root), task,
                                           paths[BAD_FRAMES_NAME], findings)
        detected = [r for r in results if r.get("status") == "detected"]
        failed = [r for r in results if r.get("status") != "detected"]
        trims = dict(old_bad.get("trim_offsets") or {})
        for r in failed:
            episodes.pop(r["key"], None)
            trims.pop(r["key"], None)
        for r in detected:
            episodes[r["key"]] = _bad_entry(r)
            if r.get("trim_offset"):
                trims[r["key"]] = int(r["trim_offset"])
            else:
                trims.pop(r["key"], None)
        bad_doc = _bad_frames_doc(episodes, trims)

        events, orphans, kept = _merge_events(old_freeze, results)
        freeze_doc = _freeze_doc(events, orphans)
        breakdown = _breakdown(bad_doc["episodes"], events)
        rows = _report_rows(old_rows, bad_doc, events, results)

        atomic_write_json(paths[BAD_FRAMES_NAME], bad_doc)
        atomic_write_json(paths[FREEZE_NAME], freeze_doc)
        atomic_write_json(paths[BREAKDOWN_NAME], breakdown)
        atomic_write_bytes(paths[REPORT_CSV_NAME], _csv_bytes(rows))

    batch_events = [e for r in detected for e in r.get("freeze_events") or []]
    summary = {
        "task": task,
        "date": date,
        "detected": len(detected),
        "failed": len(failed),
        "freeze_events": freeze.count_verdicts(batch_events),
        "manual_verdicts_kept": kept,
        "orphaned_manual_verdicts": len(orphans),
        **bad_doc["summary"],
    }
    return {"paths": {k: str(v) for k, v in paths.items()}, "summary": summary,
            "findings": findings.to_list()}


def set_verdict(path: str | os.PathLike, episode: str, event_id: str,
                verdict: str | None) -> dict:
    """Record the operator's call on one freeze event of ``freeze_intervals.json``.

    ``verdict`` is one of ``keep``, ``cut``, ``merge`` or None (clear). Raises ValueError for
    another verdict or an unreadable file, KeyError when no event of ``episode`` has
    ``event_id``. Returns the updated event.
    """
    if verdict is not None and verdict not in MANUAL_VERDICTS:
        raise ValueError(f"verdict must be one of {MANUAL_VERDICTS} or None, got {verdict!r}")
    path = Path(path)
    with locked_dir(path.parent):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot read freeze intervals: {exc}") from None
        for ev in doc.get("events") or []:
            if ev.get("episode") == episode and ev.get("id") == event_id:
                ev["manual_verdict"] = verdict
                doc["manual_counts"] = _manual_counts(doc["events"])
                atomic_write_json(path, doc)
                return ev
    known = [ev.get("id") for ev in doc.get("events") or [] if ev.get("episode") == episode]
    raise KeyError(f"{path}: no freeze event {event_id!r} in episode {episode!r} "
                   f"(its events: {known or 'none'})")


# =========================================================================== bad_frames.json


def _without_task_collisions(results: list[dict], root: Path, task: str, where: Path,
                             findings: Findings) -> list[dict]:
    """The 1.7.2 keys (``<date>/episode_NNN``) have no task: when another task under ROOT
    has a recording with the same date and name, an entry could belong to either, so this
    task's episode is reported instead of merged (the other task's entry is never
    replaced)."""
    kept = []
    for r in results:
        date, name = r["key"].rsplit("/", 1)
        others = sorted(p.parent.parent.name for p in (root / "data").glob(f"*/{date}/{name}.h5*")
                        if p.parent.parent.name != task)
        if others:
            findings.add(where, "react.task_collision",
                         f"{r['key']} exists for task {task!r} and for {', '.join(others)}; "
                         f"bad_frames.json keys have no task, so tasks recorded on the same "
                         f"date need their own dataset ROOT", item=r["key"])
        else:
            kept.append(r)
    return kept


def _bad_entry(r: dict) -> dict:
    T = int(r["n_frames"])
    entry = {"n_frames": T, "duration_s": round(T / FPS, 3)}
    for mode in detect.MODES:
        entry[mode] = [[int(a), int(b)] for a, b in r["intervals"].get(mode, [])]
    entry["total_bad_frames"] = int(r["total_bad_frames"])
    entry["bad_fraction"] = float(r["bad_fraction"])
    return entry


def _bad_frames_doc(episodes: dict, trims: dict) -> dict:
    episodes = {k: episodes[k] for k in sorted(episodes)}
    total = sum(int(e.get("n_frames", 0)) for e in episodes.values())
    bad = sum(int(e.get("total_bad_frames", 0)) for e in episodes.values())
    return {
        "tau_intensity": detect.TAU_INTENSITY,
        "tau_velocity_mps": detect.TAU_VELOCITY_MPS,
        "tau_angular_rad_per_s": detect.TAU_ANGULAR_RAD_PS,
        "tau_opt_gap_s": detect.TAU_OPT_GAP_S,
        "freeze_threshold_s": detect.FREEZE_THRESHOLD_S,
        "buffer_frames": detect.BUFFER_FRAMES,
        "trim_offsets": {k: int(trims[k]) for k in sorted(trims) if k in episodes},
        "trim_note": TRIM_NOTE,
        "summary": {
            "n_episodes": len(episodes),
            "total_frames": total,
            "total_bad_frames": bad,
            "bad_fraction_overall": round(bad / total, 4) if total else 0.0,
            "n_episodes_with_bad_frames": sum(1 for e in episodes.values()
                                              if int(e.get("total_bad_frames", 0)) > 0),
        },
        "episodes": episodes,
    }


# =========================================================================== freeze_intervals.json


def _identity(ev: dict) -> tuple:
    return (ev.get("episode"), ev.get("side"), ev.get("a"), ev.get("b"))


def _merge_events(old_doc: dict, results: list[dict]) -> tuple[list[dict], list[dict], int]:
    """New events of the re-run episodes + old events of the others, verdicts carried over."""
    rerun = {r["key"] for r in results}
    old_events = [e for e in old_doc.get("events") or [] if isinstance(e, dict)]
    old_orphans = [e for e in old_doc.get("orphaned_manual_verdicts") or []
                   if isinstance(e, dict)]
    # Verdicts by identity: live events first, then earlier orphans (a re-run may bring
    # an orphaned event back, e.g. when a re-trim is undone).
    verdicts: dict[tuple, str] = {}
    for ev in old_orphans + old_events:
        if ev.get("manual_verdict") is not None:
            verdicts[_identity(ev)] = ev["manual_verdict"]
    clips = {_identity(ev): ev["clip"] for ev in old_events if ev.get("clip")}

    events = [e for e in old_events if e.get("episode") not in rerun]
    new_ids, kept = set(), 0
    for r in results:
        if r.get("status") != "detected":
            continue
        for ev in r.get("freeze_events") or []:
            ev = {k: ev[k] for k in freeze.EVENT_FIELDS if k in ev}
            ev["manual_verdict"] = verdicts.get(_identity(ev))
            if _identity(ev) in clips:  # the clip stays until the clips stage redraws it
                ev["clip"] = clips[_identity(ev)]
            kept += ev["manual_verdict"] is not None
            new_ids.add(_identity(ev))
            events.append(ev)
    live = {_identity(e) for e in events}
    orphans = [e for e in old_orphans if _identity(e) not in live]
    for ev in old_events:
        if (ev.get("episode") in rerun and ev.get("manual_verdict") is not None
                and _identity(ev) not in new_ids):
            orphans.append(dict(ev, orphaned_at=_utc_now()))
    events.sort(key=lambda e: (str(e.get("episode")), int(e.get("a", 0)), str(e.get("side"))))
    return events, orphans, kept


def _manual_counts(events: list[dict]) -> dict[str, int]:
    counts = {v: 0 for v in MANUAL_VERDICTS}
    counts["unset"] = 0
    for ev in events:
        counts[ev.get("manual_verdict") or "unset"] = counts.get(
            ev.get("manual_verdict") or "unset", 0) + 1
    return counts


def _freeze_doc(events: list[dict], orphans: list[dict]) -> dict:
    return {
        "threshold_s": freeze.THRESHOLD_S,
        "near_window_s": freeze.NEAR_WINDOW_S,
        "n_dup_samples": freeze.N_DUP_SAMPLES,
        "thresholds": dict(freeze.THRESHOLDS),
        "counts": freeze.count_verdicts(events),
        "manual_verdicts": list(MANUAL_VERDICTS),
        "manual_counts": _manual_counts(events),
        "note": ("a/b: trimmed .pt frames (inclusive); _h5_a/_h5_b: raw .h5 frames. "
                 "manual_verdict (null|keep|cut|merge) is the operator's call; re-runs keep "
                 "it for the same (episode, side, a, b)."),
        "events": events,
        "orphaned_manual_verdicts": orphans,
    }


# =========================================================================== breakdown


def _breakdown(episodes: dict, events: list[dict]) -> dict:
    total = sum(int(e.get("n_frames", 0)) for e in episodes.values())
    groups = {"gelsight_led_flicker": ("intensity_spikes",),
              "pose_teleport": ("pose_teleports_L", "pose_teleports_R"),
              "ot_loss": ("ot_loss_L", "ot_loss_R")}
    modes = {}
    for name, keys in groups.items():
        frames, affected = 0, []
        for key, e in episodes.items():
            n = detect.union_count([e.get(k) or [] for k in keys], int(e.get("n_frames", 0)))
            if n:
                frames += n
                affected.append(key)
        modes[name] = {"frames": frames, "pct": round(100.0 * frames / total, 4) if total else 0.0}
        if name == "gelsight_led_flicker":
            modes[name]["tau_intensity"] = detect.TAU_INTENSITY
            modes[name]["buffer_frames"] = detect.BUFFER_FRAMES
        elif name == "pose_teleport":
            modes[name]["trans_teleport_mps"] = detect.TAU_VELOCITY_MPS
            modes[name]["ang_teleport_rad_per_s"] = detect.TAU_ANGULAR_RAD_PS
        else:
            modes[name].update(freeze_threshold_s=detect.FREEZE_THRESHOLD_S,
                               trans_teleport_mps=freeze.TAU_TRANS_MPS,
                               ang_teleport_rad_per_s=freeze.TAU_ANG_RAD_S,
                               opt_gap_s=freeze.TAU_OPT_GAP_S)
        modes[name]["episodes_affected"] = affected
        if name == "ot_loss":
            modes[name]["freeze_verdicts"] = freeze.count_verdicts(
                [e for e in events if e.get("episode") in episodes])
            modes[name]["note"] = OT_LOSS_NOTE
    return {"total_frames": total, "n_episodes": len(episodes), "modes": modes}


# =========================================================================== CSV report


def _report_rows(old_rows: dict, bad_doc: dict, events: list[dict],
                 results: list[dict]) -> list[dict]:
    """One row per episode: this batch's results, earlier rows for the others, and a row
    rebuilt from bad_frames.json for any episode that has no row yet."""
    by_episode: dict[str, list[dict]] = {}
    for ev in events:
        by_episode.setdefault(ev.get("episode"), []).append(ev)
    rows = {k: v for k, v in old_rows.items()}
    for key, entry in bad_doc["episodes"].items():
        if key not in rows:
            rows[key] = _row_from_entry(key, entry, bad_doc["trim_offsets"].get(key, 0),
                                        by_episode.get(key, []))
    for r in results:
        if r.get("status") == "detected":
            rows[r["key"]] = _row_from_result(r, bad_doc["episodes"][r["key"]],
                                              by_episode.get(r["key"], []))
        else:
            rows[r["key"]] = _failed_row(r)
    return [rows[k] for k in sorted(rows)]


def _row_from_entry(key: str, entry: dict, trim: int, events: list[dict]) -> dict:
    T = int(entry.get("n_frames", 0))
    lists = [entry.get(m) or [] for m in detect.MODES]
    segs = detect.clean_segments(lists, T)
    row = {c: "" for c in CSV_COLUMNS}
    row.update(
        episode=key, date=key.split("/", 1)[0], status="detected", n_frames=T,
        duration_s=round(T / FPS, 3), trim_offset=int(trim),
        total_bad_frames=int(entry.get("total_bad_frames", 0)),
        bad_fraction=entry.get("bad_fraction", ""),
        clean_segments=len(segs), clean_frames=sum(b - a + 1 for a, b in segs),
        longest_clean_s=round(max((b - a + 1 for a, b in segs), default=0) / FPS, 3),
    )
    for mode, col in _MODE_COLUMNS.items():
        row[col] = detect.union_count([entry.get(mode) or []], T)
    counts = freeze.count_verdicts(events)
    row["freeze_events"] = len(events)
    for v in freeze.VERDICTS:
        row[f"freeze_{v}"] = counts[v]
    return row


def _row_from_result(r: dict, entry: dict, events: list[dict]) -> dict:
    row = _row_from_entry(r["key"], entry, r.get("trim_offset") or 0, events)
    drift = r.get("drift") or {}
    dl, dr = drift.get("drift_left"), drift.get("drift_right")
    row.update(
        active_sensors=";".join(r.get("active_sensors") or []),
        drift_left="" if dl is None else round(float(dl), 3),
        drift_right="" if dr is None else round(float(dr), 3),
        drift_warning="" if dl is None and dr is None else
        str(max(x for x in (dl, dr) if x is not None) > 5.0).lower(),
        note="; ".join(f["message"] for f in r.get("findings") or []
                       if f.get("rule") == "sensor_inactive"),
    )
    return row


def _failed_row(r: dict) -> dict:
    row = {c: "" for c in CSV_COLUMNS}
    errors = [f for f in r.get("findings") or [] if f.get("severity") == "error"]
    row.update(episode=r["key"], date=r["key"].split("/", 1)[0], status="failed",
               note=(f"{errors[0]['rule']}: {errors[0]['message']}" if errors
                     else "detection failed"))
    if r.get("n_frames") is not None:
        row["n_frames"] = r["n_frames"]
        row["duration_s"] = round(int(r["n_frames"]) / FPS, 3)
    return row


def _csv_bytes(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n",
                       extrasaction="ignore")
    w.writeheader()
    for row in rows:
        w.writerow(row)
    return buf.getvalue().encode("utf-8")


# =========================================================================== plumbing


def _load_json(path: Path, findings: Findings) -> dict:
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise ValueError(f"top level is {type(doc).__name__}, not an object")
        return doc
    except (OSError, ValueError) as exc:
        aside = _set_aside(path)
        findings.add(path, "unreadable_output", f"not valid JSON ({exc}); moved to "
                     f"{aside.name} and rebuilt from this run", severity="warning")
        return {}


def _load_csv(path: Path, findings: Findings) -> dict[str, dict]:
    if not path.exists():
        return {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "episode" not in reader.fieldnames:
                raise ValueError("no 'episode' column")
            return {row["episode"]: {c: row.get(c) or "" for c in CSV_COLUMNS}
                    for row in reader if row.get("episode")}
    except (OSError, ValueError, csv.Error) as exc:
        aside = _set_aside(path)
        findings.add(path, "unreadable_output", f"unreadable CSV ({exc}); moved to "
                     f"{aside.name} and rebuilt", severity="warning")
        return {}


def _set_aside(path: Path) -> Path:
    aside = path.with_name(f"{path.name}.corrupt-{_utc_now().replace(':', '')}")
    os.replace(path, aside)
    return aside


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")




def set_clips(path: str | os.PathLike, clips: dict[str, str]) -> int:
    """Record each freeze event's clip (``{event id: clip path}``) in freeze_intervals.json;
    returns how many events got one. Events without a clip in ``clips`` are left as they are."""
    path = Path(path)
    if not clips or not path.is_file():
        return 0
    with locked_dir(path.parent):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot read freeze intervals: {exc}") from None
        n = 0
        for ev in doc.get("events") or []:
            if ev.get("id") in clips and ev.get("clip") != clips[ev["id"]]:
                ev["clip"] = clips[ev["id"]]
                n += 1
        if n:
            atomic_write_json(path, doc)
    return n
