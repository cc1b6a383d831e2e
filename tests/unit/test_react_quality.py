"""Dataset outputs of the failure detection (bad_frames.json, freeze_intervals.json, breakdown,
CSV report) and tasks.json: schemas, merging across dates, preserved human input."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pytest

from robocurate.react import detect
from robocurate.react.detect import detect_episode, union_count
from robocurate.react.metadata import TasksJsonError, update_tasks_json
from robocurate.react.quality import (CSV_COLUMNS, FIGURES_DIR, set_verdict,
                                      write_quality_outputs)
from test_react_detect import DATE, TASK, make_sample

BAD_KEYS = ["tau_intensity", "tau_velocity_mps", "tau_angular_rad_per_s", "tau_opt_gap_s",
            "freeze_threshold_s", "buffer_frames", "trim_offsets", "trim_note", "summary",
            "episodes"]
EPISODE_KEYS = ["n_frames", "duration_s", "intensity_spikes", "pose_teleports_L",
                "pose_teleports_R", "ot_loss_L", "ot_loss_R", "total_bad_frames",
                "bad_fraction"]


@pytest.fixture(scope="module")
def detected(tmp_path_factory):
    """Detect manifests of every episode of a sample with detector faults (incl. failures)."""
    root = tmp_path_factory.mktemp("react-quality-src")
    manifest, _ = make_sample(root, episodes=1, seed=9, height=48, width=64)
    results = []
    for e in manifest["files"]:
        h5 = root / e["path"]
        pt = root / "processed" / "mode1_v1" / TASK / DATE / (h5.stem + ".pt")
        results.append(detect_episode(h5, pt))
    return manifest, results


def _read(root: Path, name: str):
    path = root / FIGURES_DIR / name
    if name.endswith(".csv"):
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    return json.loads(path.read_text())


def _redate(results: list[dict], date: str) -> list[dict]:
    out = copy.deepcopy(results)
    for r in out:
        r["key"] = r["key"].replace(DATE, date)
        for ev in r["freeze_events"]:
            ev["episode"] = ev["episode"].replace(DATE, date)
            ev["id"] = ev["id"].replace(DATE, date)
    return out


def test_outputs_follow_the_schemas(tmp_path, detected):
    manifest, results = detected
    out = write_quality_outputs(tmp_path, TASK, DATE, results)
    ok = [r for r in results if r["status"] == "detected"]
    failed = [r for r in results if r["status"] == "failed"]
    assert out["summary"]["detected"] == len(ok) and out["summary"]["failed"] == len(failed) == 3
    assert not list((tmp_path / FIGURES_DIR).glob("*.tmp")) and out["findings"] == []

    bad = _read(tmp_path, "bad_frames.json")
    assert list(bad) == BAD_KEYS
    assert (bad["tau_intensity"], bad["tau_velocity_mps"], bad["tau_angular_rad_per_s"],
            bad["tau_opt_gap_s"], bad["freeze_threshold_s"], bad["buffer_frames"]) == (
        30.0, 5.0, 15.0, 0.1, 0.25, 3)
    assert sorted(bad["episodes"]) == sorted(r["key"] for r in ok)
    for r in ok:
        entry = bad["episodes"][r["key"]]
        assert list(entry) == EPISODE_KEYS
        assert entry["n_frames"] == r["n_frames"]
        assert entry["duration_s"] == round(r["n_frames"] / 30, 3)
        assert all(entry[m] == r["intervals"][m] for m in detect.MODES)
    late = next(r for r in ok if r["trim_offset"] > 0)
    assert bad["trim_offsets"] == {late["key"]: late["trim_offset"]}
    total = sum(r["n_frames"] for r in ok)
    nbad = sum(r["total_bad_frames"] for r in ok)
    assert bad["summary"] == {"n_episodes": len(ok), "total_frames": total,
                              "total_bad_frames": nbad,
                              "bad_fraction_overall": round(nbad / total, 4),
                              "n_episodes_with_bad_frames": sum(
                                  1 for r in ok if r["total_bad_frames"])}

    br = _read(tmp_path, "data_quality_breakdown.json")
    assert br["total_frames"] == total and br["n_episodes"] == len(ok)
    assert list(br["modes"]) == ["gelsight_led_flicker", "pose_teleport", "ot_loss"]
    modes = {"gelsight_led_flicker": ["intensity_spikes"],
             "pose_teleport": ["pose_teleports_L", "pose_teleports_R"],
             "ot_loss": ["ot_loss_L", "ot_loss_R"]}
    for name, keys in modes.items():
        n = sum(union_count([r["intervals"][k] for k in keys], r["n_frames"]) for r in ok)
        assert br["modes"][name]["frames"] == n > 0
        assert br["modes"][name]["pct"] == pytest.approx(100 * n / total, abs=1e-4)
        assert br["modes"][name]["episodes_affected"] == sorted(
            r["key"] for r in ok if any(r["intervals"][k] for k in keys))
    ot = br["modes"]["ot_loss"]
    assert (ot["freeze_threshold_s"], ot["trans_teleport_mps"], ot["ang_teleport_rad_per_s"],
            ot["opt_gap_s"]) == (0.25, 5.0, 15.0, 0.1) and ot["note"]
    assert ot["freeze_verdicts"] == {"ot_loss": 1, "pipeline_stall": 2, "real_still": 2,
                                     "ambiguous": 0}

    fr = _read(tmp_path, "freeze_intervals.json")
    assert fr["threshold_s"] == 0.25 and fr["counts"] == ot["freeze_verdicts"]
    assert set(fr["thresholds"]) == {"trans_mps", "ang_rad_s", "opt_gap_s", "dup_frac",
                                     "view_still", "tac_still"}
    assert len(fr["events"]) == 5 and fr["orphaned_manual_verdicts"] == []
    for ev in fr["events"]:
        assert ev["manual_verdict"] is None and ev["id"].startswith(ev["episode"] + ":")
        assert {"episode", "side", "a", "b", "_h5_a", "_h5_b", "length_s", "view_motion",
                "cam0_motion", "cam1_motion", "tac_motion", "cam0_dup", "cam1_dup",
                "cam2_dup", "tac_dup", "trans_vel_near_mps", "ang_vel_near_rad_s",
                "opt_gap_s", "verdict"} <= set(ev)

    rows = _read(tmp_path, "data_quality_report.csv")
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [row["episode"] for row in rows] == sorted(r["key"] for r in results)
    by_key = {row["episode"]: row for row in rows}
    for r in ok:
        row = by_key[r["key"]]
        assert row["status"] == "detected" and int(row["n_frames"]) == r["n_frames"]
        assert int(row["total_bad_frames"]) == r["total_bad_frames"]
        assert int(row["freeze_events"]) == len(r["freeze_events"])
        assert int(row["clean_frames"]) <= r["n_frames"] - r["total_bad_frames"]
    for r in failed:
        assert by_key[r["key"]]["status"] == "failed" and by_key[r["key"]]["note"]
    stall = next(r for r in ok if any(e["verdict"] == "pipeline_stall"
                                      for e in r["freeze_events"]))
    assert by_key[stall["key"]]["freeze_pipeline_stall"] == "2"
    drifted = next(r for r in ok if r["drift"].get("drift_left", 0) > 5)
    assert by_key[drifted["key"]]["drift_warning"] == "true"
    single = next(r for r in ok if r["skipped"] == ["right"])
    assert by_key[single["key"]]["active_sensors"] == "left"


def test_new_date_keeps_other_dates_and_failures_drop_stale_entries(tmp_path, detected):
    _, results = detected
    ok = [r for r in results if r["status"] == "detected"]
    write_quality_outputs(tmp_path, TASK, DATE, ok)
    other = _redate(ok, "2026-06-02")
    write_quality_outputs(tmp_path, TASK, "2026-06-02", other)
    bad = _read(tmp_path, "bad_frames.json")
    assert len(bad["episodes"]) == 2 * len(ok)
    assert bad["summary"]["total_frames"] == 2 * sum(r["n_frames"] for r in ok)
    assert len(bad["trim_offsets"]) == 2
    assert len(_read(tmp_path, "freeze_intervals.json")["events"]) == 10
    assert len(_read(tmp_path, "data_quality_report.csv")) == 2 * len(ok)
    br = _read(tmp_path, "data_quality_breakdown.json")
    assert br["n_episodes"] == 2 * len(ok)
    # Re-running one episode of the first date, which now fails: its stale entry goes.
    gone = copy.deepcopy(next(r for r in ok if r["freeze_events"]))
    gone.update(status="failed", findings=[{"path": gone["path"], "rule": "missing_pt",
                                           "message": "contact-index output is missing",
                                           "item": None, "severity": "error"}])
    write_quality_outputs(tmp_path, TASK, DATE, [gone])
    bad = _read(tmp_path, "bad_frames.json")
    assert gone["key"] not in bad["episodes"] and len(bad["episodes"]) == 2 * len(ok) - 1
    events = _read(tmp_path, "freeze_intervals.json")["events"]
    assert all(ev["episode"] != gone["key"] for ev in events)
    row = {r["episode"]: r for r in _read(tmp_path, "data_quality_report.csv")}[gone["key"]]
    assert row["status"] == "failed" and "missing_pt" in row["note"]


def test_same_date_and_name_in_another_task_is_reported_not_merged(tmp_path, detected):
    _, results = detected
    ok = [r for r in results if r["status"] == "detected"]
    first = write_quality_outputs(tmp_path, TASK, DATE, ok)
    assert not first["findings"]
    before = _read(tmp_path, "bad_frames.json")
    # Another task recorded an episode with the same date and name under this ROOT.
    name = ok[0]["key"].rsplit("/", 1)[1]
    for task in (TASK, "cable_routing"):
        twin = tmp_path / "data" / task / DATE / f"{name}.h5"
        twin.parent.mkdir(parents=True)
        twin.write_bytes(b"")
    out = write_quality_outputs(tmp_path, "cable_routing", DATE, [copy.deepcopy(ok[0])])
    rules = [f["rule"] for f in out["findings"]]
    assert rules == ["react.task_collision"] and TASK in out["findings"][0]["message"]
    assert _read(tmp_path, "bad_frames.json")["episodes"] == before["episodes"]


def test_manual_verdicts_survive_reruns(tmp_path, detected):
    _, results = detected
    ok = [r for r in results if r["status"] == "detected"]
    write_quality_outputs(tmp_path, TASK, DATE, ok)
    path = tmp_path / FIGURES_DIR / "freeze_intervals.json"
    events = _read(tmp_path, "freeze_intervals.json")["events"]
    first, second = events[0], events[1]
    assert set_verdict(path, first["episode"], first["id"], "cut")["manual_verdict"] == "cut"
    set_verdict(path, second["episode"], second["id"], "keep")
    doc = json.loads(path.read_text())
    assert doc["manual_counts"] == {"keep": 1, "cut": 1, "merge": 0, "unset": 3}
    with pytest.raises(ValueError):
        set_verdict(path, first["episode"], first["id"], "maybe")
    with pytest.raises(KeyError, match="no freeze event"):
        set_verdict(path, first["episode"], "nope", "cut")

    # Same detection again: both verdicts kept.
    out = write_quality_outputs(tmp_path, TASK, DATE, ok)
    assert out["summary"]["manual_verdicts_kept"] == 2
    verdicts = {ev["id"]: ev["manual_verdict"]
                for ev in _read(tmp_path, "freeze_intervals.json")["events"]}
    assert verdicts[first["id"]] == "cut" and verdicts[second["id"]] == "keep"

    # The first event's episode is re-detected with a shifted event (e.g. a new trim):
    # its verdict is kept aside, not lost, and comes back if the event does.
    changed = copy.deepcopy(next(r for r in ok if r["key"] == first["episode"]))
    for ev in changed["freeze_events"]:
        if ev["id"] == first["id"]:
            ev["a"] += 1
            ev["id"] = f"{ev['episode']}:{ev['side']}:{ev['a']}-{ev['b']}"
    out = write_quality_outputs(tmp_path, TASK, DATE, [changed])
    doc = _read(tmp_path, "freeze_intervals.json")
    assert out["summary"]["orphaned_manual_verdicts"] == 1
    (orphan,) = doc["orphaned_manual_verdicts"]
    assert orphan["id"] == first["id"] and orphan["manual_verdict"] == "cut"
    assert orphan["orphaned_at"]
    assert {ev["id"]: ev["manual_verdict"] for ev in doc["events"]}[second["id"]] == "keep"
    write_quality_outputs(tmp_path, TASK, DATE, ok)
    doc = _read(tmp_path, "freeze_intervals.json")
    assert doc["orphaned_manual_verdicts"] == []
    assert {ev["id"]: ev["manual_verdict"] for ev in doc["events"]}[first["id"]] == "cut"


def test_corrupt_previous_output_is_set_aside(tmp_path, detected):
    _, results = detected
    out_dir = tmp_path / FIGURES_DIR
    out_dir.mkdir(parents=True)
    (out_dir / "bad_frames.json").write_text("{ not json")
    out = write_quality_outputs(tmp_path, TASK, DATE, results)
    assert [f["rule"] for f in out["findings"]] == ["unreadable_output"]
    aside = list(out_dir.glob("bad_frames.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == "{ not json"
    assert _read(tmp_path, "bad_frames.json")["summary"]["n_episodes"] > 0


# =========================================================================== tasks.json


def test_tasks_json_created_then_updated_preserving_people(tmp_path, detected):
    manifest, results = detected
    root = tmp_path
    for e in manifest["files"]:  # episode files on disk for n_episode_files
        p = root / e["path"]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    path = update_tasks_json(root, TASK, DATE, results)
    doc = json.loads(path.read_text())
    block = doc["tasks"][TASK]["per_date_notes"][DATE]
    assert doc["tasks"][TASK]["dates"] == [DATE]
    assert block["kind"] == "session" and block["active_sensors"] == ["left", "right"]
    assert block["note"] == block["auto_note"] and block["note"].startswith("bimanual;")
    for word in ("OT freeze", "pipeline_stall", "real_still", "LED intensity spikes",
                 "pose teleports", "reference drift > 5", "detection failed"):
        assert word in block["note"], word
    assert block["n_episodes"] == len(results)
    frames = sum(r["n_frames"] or 0 for r in results)
    assert block["n_frames"] == frames and block["duration_s"] == round(frames / 30, 1)
    assert doc["tasks"][TASK]["n_episode_files"] == len(manifest["files"])
    assert doc["tasks"][TASK]["duration_min"] == round(frames / 30 / 60, 1)

    # A person edits the note and adds fields; another date is added; then a re-run.
    block["note"] = "bimanual; gel re-seated before ep 3"
    block["active_sensors"] = ["left"]
    block["operator"] = "yx"
    doc["tasks"][TASK]["calibration_id"] = "may-12"
    doc["license"] = "CC-BY-4.0"
    path.write_text(json.dumps(doc))
    update_tasks_json(root, TASK, "2026-05-30", results[:2])
    update_tasks_json(root, TASK, DATE, results)
    doc = json.loads(path.read_text())
    t = doc["tasks"][TASK]
    assert doc["license"] == "CC-BY-4.0" and t["calibration_id"] == "may-12"
    assert t["dates"] == ["2026-05-30", DATE]
    block = t["per_date_notes"][DATE]
    assert block["note"] == "bimanual; gel re-seated before ep 3" and block["operator"] == "yx"
    assert block["active_sensors"] == ["left"]  # a person's call is kept...
    assert "OptiTrack data for: left, right" in block["auto_note"]
    assert t["n_frames"] == frames + t["per_date_notes"]["2026-05-30"]["n_frames"]
    # ...unless given explicitly (e.g. --active-sensors).
    update_tasks_json(root, TASK, DATE, results, active_sensors=["right", "left"])
    assert json.loads(path.read_text())["tasks"][TASK]["per_date_notes"][DATE][
        "active_sensors"] == ["left", "right"]


def test_tasks_json_that_is_not_json_is_left_alone(tmp_path):
    path = tmp_path / "tasks.json"
    path.write_text("{ hand-edited, broken")
    with pytest.raises(TasksJsonError, match="not readable JSON"):
        update_tasks_json(tmp_path, TASK, DATE, [])
    assert path.read_text() == "{ hand-edited, broken"
    path.write_text(json.dumps({"tasks": {TASK: []}}))
    with pytest.raises(TasksJsonError, match="not an object"):
        update_tasks_json(tmp_path, TASK, DATE, [])
