"""MolmoSpaces stages without Prefect, against the sample generator's expectations."""

import json
import shutil

import h5py
import numpy as np
import pytest

from robocurate.molmo.layout import batch_suffix, data_files, split_dirs
from robocurate.molmo.options import MolmoOptions
from robocurate.molmo.outputs import aggregate_stats, build_index
from robocurate.molmo.pipeline import process_file
from robocurate.molmo.repair import decode_filename

from conftest import MOLMO_VISIBILITY as VIS


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    from robocurate.samples.molmo import generate_molmo_dataset

    root = tmp_path_factory.mktemp("molmo-unit") / "data"
    generate_molmo_dataset(root, houses=2, files_per_house=2, trajs_per_file=4, seed=3)
    return root


@pytest.fixture
def data(sample, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(sample, root)
    return root


def _run_all(root, **kw):
    opts = MolmoOptions(check_visibility=VIS, **kw)
    return [process_file(p, root, opts) for p in data_files(root)]


def test_every_rule_gives_the_planted_verdict(data):
    expected = json.loads((data / "sample_manifest.json").read_text())
    manifests = {m["relpath"]: m for m in _run_all(data)}
    covered = set()
    for info in expected["files"]:
        m = manifests[info["path"]]
        rules = {(f.get("item"), f["rule"]) for f in m["findings"]}
        if not info["readable"]:
            assert m["status"] == "unreadable" and (None, "unreadable_file") in rules
            covered.add("unreadable_file")
            continue
        if info["kind"] == "nonconsecutive":
            assert (None, "nonconsecutive_indices") in rules
            covered.add("nonconsecutive_indices")
        valid = m["valid"]
        for t in info["trajectories"]:
            exp = t["expected"]
            assert (t["key"] in valid) == exp["valid"], (info["path"], t)
            if not exp["valid"] and exp["reason"] != "nonconsecutive_indices":
                assert (t["key"], exp["reason"]) in rules, (info["path"], t, rules)
                covered.add(exp["reason"])
    assert covered == set(expected["rule_ids"])


def test_repair_writes_the_exact_filename_bytes(data):
    _run_all(data)
    h5 = next(p for p in data_files(data) if "house" in p.parent.name and "batch_1_" in p.name)
    with h5py.File(h5, "r") as f:
        entry = f["traj_0/obs/sensor_data"]
        for cam in f["traj_0/obs/sensor_param"]:
            if cam in entry:
                ds = entry[cam]
                assert ds.dtype == np.uint8 and ds.shape == (100,)
                name = decode_filename(ds[()])
                assert name == f"episode_00000000_{cam}_{batch_suffix(h5)}.mp4"
                assert ds[()].tobytes() == name.encode().ljust(100, b"\0")


def test_rerun_changes_nothing_and_no_overwrite_keeps_results(data):
    first = _run_all(data)
    snapshot = {p: p.read_bytes() for p in data.rglob("*.h5")}
    second = _run_all(data)
    assert not any(m["changed"] for m in second)
    assert {p: p.read_bytes() for p in data.rglob("*.h5")} == snapshot
    assert [m["valid"] for m in first] == [m["valid"] for m in second]
    assert aggregate_stats(first) == aggregate_stats(second)
    third = _run_all(data, overwrite=False, min_steps=1000)  # would invalidate everything
    assert not any(m["changed"] for m in third)
    assert [m["valid"] for m in third] == [m["valid"] for m in first]


def test_stats_layout_and_trimmed_actions(data):
    manifests = _run_all(data)
    index = build_index(manifests)
    house, files = next(iter(index.items()))
    rel, trajs = next(iter(files.items()))
    traj = next(iter(trajs))
    from robocurate.molmo.jsonrows import decode_rows

    with h5py.File(data / rel, "r") as f:
        record = json.loads(f[f"stats/{traj}/actions/joint_pos"][()])
        acts = decode_rows(f[f"{traj}/actions/joint_pos"][()])[1:-1]
        arm = np.array([a["arm"] for a in acts])
        assert record["arm"]["count"] == len(arm)
        np.testing.assert_allclose(record["arm"]["mean"], arm.mean(0), rtol=1e-12)
        np.testing.assert_allclose(record["arm"]["std"], arm.std(0), rtol=1e-9)
        assert set(record["arm"]) == {"mean", "std", "min", "max", "count", "sum", "sum_sq"}
        qpos = json.loads(f[f"stats/{traj}/obs/agent/qpos"][()])
        assert qpos["arm"]["count"] == f[f"{traj}/obs/agent/qpos"].shape[0]  # states untrimmed
        assert qpos["base"]["mean"] == []


def test_float_keys_get_array_statistics(data):
    opts = MolmoOptions(stat_keys=["obs/extra/tcp_pose"], check_video=False)
    h5 = next(p for p in data_files(data) if p.name.endswith("batch_1_of_2.h5"))
    m = process_file(h5, data, opts)
    traj = next(iter(m["valid"]))
    with h5py.File(h5, "r") as f:
        g = f[f"stats/{traj}/obs/extra/tcp_pose"]
        x = f[f"{traj}/obs/extra/tcp_pose"][()].astype(np.float64)
        np.testing.assert_allclose(g["mean"][()], x.mean(0), rtol=1e-12)
        np.testing.assert_allclose(g["var"][()], x.var(0), rtol=1e-9)
        assert int(g["count"][()]) == len(x)
    assert "obs/extra/tcp_pose" in m["stats"]


def test_dataset_root_with_splits(tmp_path):
    from robocurate.samples.molmo import generate_molmo_dataset

    generate_molmo_dataset(tmp_path / "ds", houses=1, files_per_house=1, trajs_per_file=2,
                           splits=["train", "val"], with_invalid=False, with_unreadable=False)
    assert [p.name for p in split_dirs(tmp_path / "ds")] == ["train", "val"]


def test_missing_stats_key_is_a_finding_not_a_crash(data):
    h5 = next(p for p in data_files(data) if p.name.endswith("batch_1_of_2.h5"))
    m = process_file(h5, data, MolmoOptions(stat_keys=["no/such/key"], check_video=False))
    assert m["status"] == "ok"
    assert any(f["rule"] == "stats_failed" and "no/such/key" in f["message"]
               for f in m["findings"])
