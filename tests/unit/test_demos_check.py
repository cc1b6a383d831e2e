"""The demonstration checker on real files and on generated files with injected faults."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from robocurate.demos.check import check_file
from robocurate.demos.statistics import file_stats, merge_file_stats

from conftest import REPO, SHARED_DATA

ISAAC = SHARED_DATA / "isaaclab-mimic-robomimic-hdf5"
ROBOSUITE = REPO / "tests" / "data" / "robosuite-demos"
needs_isaac = pytest.mark.skipif(not ISAAC.is_dir(), reason="../shared/data (Isaac Lab HDF5) absent")


def _rules(manifest):
    return {(f["rule"], f.get("item")) for f in manifest["findings"]}


@needs_isaac
def test_isaac_lab_quirks_are_reported():
    m = check_file(ISAAC / "dataset.hdf5")
    assert m["schema"] == "robomimic" and m["errors"] == 0
    rules = {r for r, _ in _rules(m)}
    assert rules == {"demo_gap", "stale_total"}
    gap = next(f for f in m["findings"] if f["rule"] == "demo_gap")
    assert "demo_3" in gap["message"] and "demo_15" in gap["message"]
    stale = next(f for f in m["findings"] if f["rule"] == "stale_total")
    assert "3901" in stale["message"] and "2163" in stale["message"]
    failed = check_file(ISAAC / "generated_dataset_small_failed.hdf5")
    assert {r for r, _ in _rules(failed)} == {"no_successful_demos"}
    assert check_file(ISAAC / "generated_dataset_small.hdf5")["findings"] == []


def test_robosuite_raw_layout_is_recognised():
    files = sorted(ROBOSUITE.glob("*.hdf5"))
    assert files, "tests/data/robosuite-demos is missing"
    for p in files:
        m = check_file(p)
        assert m["schema"] == "robosuite" and m["errors"] == 0, m["findings"]
        assert ("robosuite_raw_layout", None) in _rules(m)
    # Forced to robomimic, the missing observations are errors.
    forced = check_file(files[0], schema="robomimic")
    assert any(f["rule"] == "no_observations" for f in forced["findings"])


def test_nan_is_found_by_streaming_with_its_first_index(tmp_path):
    p = tmp_path / "big.hdf5"
    with h5py.File(p, "w") as f:
        d = f.create_group("data/demo_0")
        d.attrs["num_samples"] = 100_000
        d.create_dataset("obs/x", data=np.zeros((100_000, 4), np.float32), chunks=(1000, 4))
        acts = np.zeros((100_000, 2), np.float32)
        acts[73_456, 1] = np.inf
        d.create_dataset("actions", data=acts, chunks=(1000, 2))
        f["data/demo_0/obs/x"][98_765, 3] = np.nan
        f["data"].attrs["total"] = 100_000
        f["data"].attrs["env_args"] = "{}"
    m = check_file(p)
    msgs = {f["rule"]: f["message"] for f in m["findings"]}
    assert "[98765, 3]" in msgs["nan"] and "[73456, 1]" in msgs["inf"]


def test_unreadable_file_is_a_finding(tmp_path):
    p = tmp_path / "broken.hdf5"
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    m = check_file(p)
    assert m["status"] == "unreadable" and m["errors"] == 1
    assert str(p) in m["findings"][0]["path"]


@needs_isaac
def test_stats_match_numpy_over_concatenated_files(tmp_path):
    files = sorted(ISAAC.glob("*.hdf5"))
    merged = merge_file_stats([file_stats(p, tmp_path / str(i)) for i, p in enumerate(files)])
    rows, lengths = [], []
    for p in files:
        with h5py.File(p, "r") as f:
            for k in f["data"]:
                rows.append(f["data"][k]["obs/eef_pos"][()].astype(np.float64))
                lengths.append(f["data"][k]["actions"].shape[0])
    data = np.concatenate(rows)
    rec = merged["keys"]["obs/eef_pos"]
    np.testing.assert_allclose(rec["mean"], data.mean(0), rtol=1e-9)
    np.testing.assert_allclose(rec["std"], data.std(0), rtol=1e-9)
    np.testing.assert_allclose(rec["q01"], np.quantile(data, 0.01, axis=0), rtol=1e-12)
    np.testing.assert_allclose(rec["q99"], np.quantile(data, 0.99, axis=0), rtol=1e-12)
    assert rec["count"] == len(data) == merged["total_steps"] == sum(lengths)
    assert merged["demos"] == 46 and merged["successes"] == 30
    assert merged["episode_length"]["max"] == max(lengths)


def test_tactile_and_image_statistics(tmp_path):
    p = tmp_path / "tactile.hdf5"
    rng = np.random.default_rng(0)
    left = rng.random((20, 4, 4, 3)).astype(np.float32)
    right = rng.random((20, 4, 4, 3)).astype(np.float32)
    img = rng.integers(0, 255, (20, 8, 8, 3), dtype=np.uint8)
    with h5py.File(p, "w") as f:
        f.create_group("metadata")
        d = f.create_group("data/demo_0")
        d.attrs["success"] = True
        d.create_dataset("observations/tactile_left", data=left)
        d.create_dataset("observations/tactile_right", data=right)
        d.create_dataset("observations/camera", data=img)
        d.create_dataset("observations/joint_pos", data=rng.random((20, 3)))
        d.create_dataset("actions", data=rng.random((19, 2)))
    merged = merge_file_stats([file_stats(p, tmp_path / "v", image_frames_per_demo=20)])
    total = left[..., 0].sum(axis=(1, 2)) + right[..., 0].sum(axis=(1, 2))
    np.testing.assert_allclose(merged["tactile"]["total"]["mean"], [total.mean()], rtol=1e-6)
    np.testing.assert_allclose(merged["tactile"]["total"]["max"], [total.max()], rtol=1e-6)
    np.testing.assert_allclose(merged["images"]["observations/camera"]["mean"],
                               img.reshape(-1, 3).mean(0), rtol=1e-9)
    assert merged["success_rate"] == 1.0


@pytest.mark.parametrize("schema", ["robomimic", "seed"])
def test_every_injected_fault_is_found_and_clean_files_are_clean(tmp_path, schema):
    from robocurate.samples.demos import generate_demos_dataset

    generate_demos_dataset(tmp_path, schema=schema, seed=2)
    manifest = json.loads((tmp_path / "sample_manifest.json").read_text())
    covered = set()
    for info in manifest["files"]:
        m = check_file(tmp_path / info["path"])
        expected = {(e["rule"], e["demo"]) for e in info["findings"]}
        assert _rules(m) == expected, info["path"]
        covered |= {r for r, _ in expected}
        for e in info["findings"]:  # NaN/Inf come with their first offending index
            if e["rule"] in ("nan", "inf"):
                msg = next(f["message"] for f in m["findings"] if f["rule"] == e["rule"])
                assert str(e["index"]) in msg, (msg, e)
    assert covered == set(manifest["rule_ids"]["error"]) | set(manifest["rule_ids"]["warning"])
