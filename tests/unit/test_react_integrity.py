"""Raw ReAct episode integrity against the synthetic sample's ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from robocurate.react.integrity import check_episode, discover_episodes, quarantine
from robocurate.samples.react import MANIFEST_NAME, RULE_IDS, generate_react_dataset

TASK, DATE = "motherboard", "2026-06-01"


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("react")
    manifest = generate_react_dataset(root, task=TASK, date=DATE, seed=3)
    return root, manifest


def test_manifest_written_and_covers_every_rule(sample):
    root, manifest = sample
    assert json.loads((root / MANIFEST_NAME).read_text()) == manifest
    assert set(manifest["rules_covered"]) == set(RULE_IDS)
    cases = [e["case"] for e in manifest["files"]]
    assert cases == ["clean"] * 4 + ["truncated", "frame_count_mismatch",
                                     "missing_modality", "single_sided"]
    names = [Path(e["path"]).name for e in manifest["files"]]
    assert names == [f"episode_{i:03d}.h5" for i in range(8)]


def test_every_verdict_matches_manifest(sample):
    root, manifest = sample
    for entry in manifest["files"]:
        res = check_episode(root / entry["path"])
        exp = entry["expected_integrity"]
        assert res["ok"] is exp["ok"], (entry["case"], res["findings"])
        rules = [f["rule"] for f in res["findings"]]
        assert rules == ([exp["reason"]] if exp["reason"] else []), entry["case"]
        assert res["frames"] == entry["frames"], entry["case"]
        assert res["active_sensors"] == entry["active_sensors"], entry["case"]
        for f in res["findings"]:
            assert f["item"] is None and f["severity"] == "error"
            assert f["path"] == str(root / entry["path"])


def test_finding_messages_name_the_problem(sample):
    root, manifest = sample
    by_case = {e["case"]: check_episode(root / e["path"]) for e in manifest["files"]}
    assert "gelsight/left/frames" in by_case["missing_modality"]["findings"][0]["message"]
    msg = by_case["frame_count_mismatch"]["findings"][0]["message"]
    assert "gelsight/right/frames=53" in msg and "timestamps=60" in msg
    assert by_case["single_sided"]["ok"] and by_case["single_sided"]["active_sensors"] == ["left"]


def test_raw_layout(sample):
    root, manifest = sample
    with h5py.File(root / manifest["files"][0]["path"], "r") as f:
        md = f["metadata"].attrs
        assert int(md["fps"]) == 30 and md["task"] == TASK
        assert list(md["realsense_serials"]) == ["143322063538", "104122062574", "217222066989"]
        assert list(md["gelsight_serials"]) == ["2DUPB53G", "2BKRDTAD"]
        ts = f["timestamps"][:]
        assert ts.dtype == np.float64 and np.allclose(np.diff(ts), 1 / 30, atol=5e-3)
        col = f["realsense/cam1/color"]
        assert col.dtype == np.uint8 and col.shape == (60, 120, 160, 3)
        assert col.chunks == (1, 120, 160, 3) and "32001" in col._filters  # Blosc
        dep = f["realsense/cam1/depth"]
        assert dep.dtype == np.uint16 and dep.chunks == (1, 120, 160)
        assert f["gelsight/right/frames"].shape == (60, 120, 160, 3)
        for body in ("motherboard", "sensor_left", "sensor_right"):
            t, pose = f[f"optitrack/{body}/timestamps"][:], f[f"optitrack/{body}/pose"][:]
            assert pose.shape == (len(t), 7) and t[0] <= ts[0] and t[-1] >= ts[-1]
            assert np.allclose(np.linalg.norm(pose[:, 3:], axis=1), 1.0)
            assert 100 < (len(t) - 1) / (t[-1] - t[0]) < 140


def test_deterministic(tmp_path):
    m1 = generate_react_dataset(tmp_path / "a", episodes=1, frames=20, with_faults=False)
    m2 = generate_react_dataset(tmp_path / "b", episodes=1, frames=20, with_faults=False)
    assert m1 == m2
    rel = m1["files"][0]["path"]
    with h5py.File(tmp_path / "a" / rel) as fa, h5py.File(tmp_path / "b" / rel) as fb:
        for name in ("timestamps", "realsense/cam0/color", "gelsight/left/frames",
                     "optitrack/sensor_left/pose"):
            assert np.array_equal(fa[name][:], fb[name][:])


def test_missing_file_is_unreadable(tmp_path):
    res = check_episode(tmp_path / "nope.h5")
    assert not res["ok"] and res["findings"][0]["rule"] == "unreadable_file"


def test_quarantine_renames_keeps_bytes_and_discover_skips(tmp_path):
    manifest = generate_react_dataset(tmp_path, episodes=1, frames=20)
    bad = [tmp_path / e["path"] for e in manifest["files"] if not e["expected_integrity"]["ok"]]
    before = discover_episodes(tmp_path, TASK, DATE)
    assert [p.name for p in before] == [f"episode_{i:03d}.h5" for i in range(5)]
    for p in bad:
        raw = p.read_bytes()
        new = quarantine(p)
        assert new == p.with_name(p.name + ".corrupt")
        assert not p.exists() and new.read_bytes() == raw
    after = discover_episodes(tmp_path, TASK, DATE)
    assert after == [p for p in before if p not in bad]
    assert all(check_episode(p)["ok"] for p in after)
    # A second quarantine of the same name gets a numeric suffix, never overwrites.
    p = bad[0]
    p.write_bytes(b"not hdf5")
    assert not check_episode(p)["ok"]
    second = quarantine(p)
    assert second.name == p.name + ".corrupt.1" and second.read_bytes() == b"not hdf5"
    assert p.with_name(p.name + ".corrupt").stat().st_size > 0
    assert discover_episodes(tmp_path, TASK, "1999-01-01") == []
