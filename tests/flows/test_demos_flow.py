"""Demonstration flows under the session's Prefect harness."""

import json
import shutil

import h5py
import pytest

from conftest import REPO

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]

ROBOSUITE = REPO / "tests" / "data" / "robosuite-demos"


@pytest.fixture
def sample(tmp_path):
    from robocurate.samples.demos import generate_demos_dataset

    generate_demos_dataset(tmp_path / "demos", files=2, demos_per_file=5, seed=1)
    return tmp_path / "demos"


def test_check_flow_reports_every_planted_fault(sample):
    from flows.demos import demos_check

    manifest = json.loads((sample / "sample_manifest.json").read_text())
    files = sorted(str(p) for p in sample.glob("*.hdf5"))
    result = demos_check(files=files, workers=2)
    by_file = {e["path"]: e for e in result["files"]}
    for info in manifest["files"]:
        entry = by_file[str((sample / info["path"]).resolve())]
        got = {(f["rule"], f.get("item")) for f in entry["findings"]}
        assert got == {(e["rule"], e["demo"]) for e in info["findings"]}, info["path"]
    assert result["summary"]["errors"] > 0
    report = json.loads((sample / "robocurate-report.json").read_text())
    assert report["summary"]["errors"] == result["summary"]["errors"]
    # Checking again is served from the cache.
    again = demos_check(files=files, workers=2)
    assert again["summary"] == result["summary"]


def test_stats_and_split_flows(sample, tmp_path):
    from flows.demos import demos_split, demos_stats

    clean = sorted(str(p) for p in sample.glob("demos_*.hdf5"))
    out = tmp_path / "stats.json"
    result = demos_stats(files=clean, out=str(out), workers=2)
    stats = json.loads(out.read_text())
    assert stats["demos"] == result["summary"]["demos"] > 0
    assert "actions" in stats["keys"] and "q99" in stats["keys"]["actions"]

    copies = []
    for p in sorted(ROBOSUITE.glob("*.hdf5"))[:2]:
        shutil.copy(p, tmp_path / p.name)
        copies.append(str(tmp_path / p.name))
    split = demos_split(files=copies, valid_fraction=0.5, seed=0)
    assert split["summary"]["files"] == 2
    for c in copies:
        with h5py.File(c, "r") as f:
            assert set(f["mask"]) >= {"train", "valid"}


def test_normalizer_fit_flow(sample, tmp_path):
    from flows.demos import demos_normalizer_fit
    from robocurate.demos.normalize import DataNormalizer

    clean = sorted(str(p) for p in sample.glob("demos_*.hdf5"))
    out = tmp_path / "norm.json"
    result = demos_normalizer_fit(files=clean, out=str(out), mode="gaussian", mask="train")
    norm = DataNormalizer.load(out)
    assert norm.obs_keys == result["obs_keys"] and norm.obs_keys
    with h5py.File(clean[0], "r") as f:
        demo = f["mask/train"][0].decode()
        a = f[f"data/{demo}/actions"][()].astype("float64")  # float32 round trips to 1e-7
    import numpy as np

    np.testing.assert_allclose(norm.denormalize_action(norm.normalize_action(a)), a, rtol=1e-9,
                               atol=1e-12)
