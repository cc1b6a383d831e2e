"""The MolmoSpaces flow on generated data, checked against the generator's manifest."""

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from robocurate.io.h5safe import dataset_fingerprints
from robocurate.molmo.options import MolmoOptions

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]

from conftest import MOLMO_VISIBILITY as VIS


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    from robocurate.samples.molmo import generate_molmo_dataset

    root = tmp_path_factory.mktemp("molmo") / "split"
    generate_molmo_dataset(root, houses=2, files_per_house=3, trajs_per_file=6, seed=7)
    return root


def _run(root, **kw):
    from flows.molmo import molmo_postprocess

    return molmo_postprocess(root=str(root), options=MolmoOptions(check_visibility=VIS, **kw),
                             workers=2)


def _expected(root):
    return json.loads((root / "sample_manifest.json").read_text())


def test_postprocess_end_to_end(sample, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(sample, root)
    manifest = _expected(root)
    h5s = sorted(root.rglob("traj*.h5"))
    before = {}
    for p in h5s:
        try:
            before[p] = dataset_fingerprints(p)
        except OSError:
            before[p] = None

    result = _run(root)
    report = json.loads((root / "robocurate-report.json").read_text())
    assert report["summary"]["files"] == len(h5s)

    # Every trajectory gets the verdict (and reason) the generator planted.
    index = json.loads((root / "valid_trajectory_index.json").read_text())
    found = {(f["path"], f.get("item")): f["rule"] for f in report["findings"]}
    for info in manifest["files"]:
        rel = info["path"]
        path = root / rel
        if not info["readable"]:
            assert found[(str(path), None)] == "unreadable_file"
            continue
        with h5py.File(path, "r") as f:
            mask = f["valid_traj_mask"][()]
            assert mask.dtype == bool and mask.tolist() == info["expected_mask"]
            for t in info["trajectories"]:
                traj, exp = t["key"], t["expected"]
                if not exp["valid"] and exp["reason"] != "nonconsecutive_indices":
                    assert found.get((str(path), traj)) == exp["reason"], (rel, traj)
                if exp["valid"]:
                    assert index[path.parent.name][rel][traj] == f[traj]["success"].shape[0]
                    assert f"stats/{traj}/actions/joint_pos" in f
        # Pre-existing datasets are bit-exact; only additions appeared.
        after = dataset_fingerprints(path)
        for name, fp in before[path].items():
            assert after[name] == fp, name
        new = {n.lstrip("/") for n in set(after) - set(before[path])}
        assert all(n.startswith(("stats/", "valid_traj_mask")) or "/obs/sensor_data/" in n
                   for n in new), new

    agg = json.loads((root / "aggregated_statistics.json").read_text())
    assert "actions/joint_pos/arm" in agg and "obs/agent/qpos/gripper" in agg
    assert agg == json.loads((root / "aggregated_stats.json").read_text())
    assert list(index) == sorted(index, key=lambda h: int(h.split("_")[-1]))
    assert result["summary"]["unreadable files"] == 1

    # Re-running on unchanged data is served from the cache and changes nothing.
    digests = {p: p.read_bytes() for p in root.rglob("*.h5")}
    second = _run(root)
    assert second["summary"]["cached files"] == len(h5s)
    assert all(p.read_bytes() == b for p, b in digests.items())


def test_aggregate_matches_numpy_over_valid_trajectories(sample, tmp_path):
    from robocurate.molmo.jsonrows import decode_rows

    root = tmp_path / "data"
    shutil.copytree(sample, root)
    _run(root)
    agg = json.loads((root / "aggregated_statistics.json").read_text())
    index = json.loads((root / "valid_trajectory_index.json").read_text())
    rows = {"actions/joint_pos/arm": [], "obs/agent/qpos/arm": []}
    for house, files in index.items():
        for rel, trajs in files.items():
            with h5py.File(root / rel, "r") as f:
                for traj in trajs:
                    acts = decode_rows(f[traj]["actions/joint_pos"][()])[1:-1]
                    rows["actions/joint_pos/arm"] += [d["arm"] for d in acts if "arm" in d]
                    rows["obs/agent/qpos/arm"] += [d["arm"] for d in
                                                   decode_rows(f[traj]["obs/agent/qpos"][()])]
    for key, values in rows.items():
        data = np.asarray(values, dtype=np.float64)
        np.testing.assert_allclose(agg[key]["mean"], data.mean(0), rtol=1e-9)
        np.testing.assert_allclose(agg[key]["std"], data.std(0), rtol=1e-9)
        np.testing.assert_allclose(agg[key]["min"], data.min(0), rtol=0)
        assert agg[key]["count"] == len(data)


def test_changed_file_is_reprocessed_and_no_overwrite_keeps_results(sample, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(sample, root)
    _run(root)
    target = sorted(p for p in root.rglob("traj*.h5") if "batch_1_" in p.name)[0]
    with h5py.File(target, "r+") as f:  # an operator edits one trajectory's success flags
        f["traj_0/success"][...] = ~f["traj_0/success"][()]
    third = _run(root)
    assert third["summary"]["cached files"] == third["summary"]["files"] - 1
    kept = _run(root, overwrite=False)
    assert kept["summary"]["files changed"] == 0
