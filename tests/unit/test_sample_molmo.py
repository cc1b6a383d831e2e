"""robocurate.samples.molmo: the synthetic MolmoSpaces data and its manifest.

The manifest's expectations are checked against an independent, test-local
transcription of the validator rules (reference part 1.5), with repair simulated by
"the mp4 exists next to the h5", so a generator bug cannot hide behind a validator
bug or vice versa.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from robocurate.io.video import VideoError, count_frames, decode_frames_at, frames_to_check_indices
from robocurate.samples.molmo import (
    CHECK_CAMERA,
    MANIFEST_NAME,
    RULE_IDS,
    generate_molmo_dataset,
)

ACTION_KEYS = {"commanded_action", "joint_pos", "joint_pos_rel", "ee_pose", "ee_twist"}
WRIST = "wrist_camera_zed_mini"
PAIRS = [[CHECK_CAMERA, "pickup_obj"], [CHECK_CAMERA, "place_receptacle"]]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("molmo")
    manifest = generate_molmo_dataset(root)
    return root, manifest


def _row(arr_row) -> dict:
    return json.loads(np.asarray(arr_row).tobytes().decode("utf-8").rstrip("\x00"))


def _clean_traj(root: Path, manifest: dict):
    for f in manifest["files"]:
        if f["kind"] == "regular":
            for t in f["trajectories"]:
                if t["case"] == "clean":
                    return root / f["path"], t
    raise AssertionError("no clean trajectory")


# --------------------------------------------------------------------------- layout


def test_directory_layout_and_names(sample):
    root, m = sample
    assert json.loads((root / MANIFEST_NAME).read_text()) == m
    regular = [f for f in m["files"] if f["kind"] == "regular"]
    assert len(regular) == 2 * 2
    houses = {f["house"] for f in regular}
    assert len(houses) == 2 and all(re.fullmatch(r"house_\d+", h) for h in houses)
    for f in m["files"]:
        path = root / f["path"]
        assert path.is_file()
        assert re.fullmatch(r"house_\d+/trajectories_batch_(\d+)_of_(\d+)\.h5", f["path"])
        b, n = map(int, re.search(r"batch_(\d+)_of_(\d+)", f["path"]).groups())
        assert 1 <= b <= n
        if f["kind"] == "regular":
            assert n == 2
    # Every mp4 is named after an episode of an h5 next to it.
    for mp4 in root.rglob("*.mp4"):
        match = re.fullmatch(
            r"episode_(\d{8})_(wrist_camera_zed_mini(?:_depth)?|"
            r"droid_shoulder_light_randomization)_(batch_\d+_of_\d+)\.mp4", mp4.name)
        assert match, mp4.name
        assert (mp4.parent / f"trajectories_{match.group(3)}.h5").is_file()
    assert not list(root.rglob(".*")), "temporary files left behind"
    # Depth only for the camera that records it.
    assert not list(root.rglob("*droid_shoulder_light_randomization_depth*"))


def test_clean_trajectory_matches_documented_layout(sample):
    root, m = sample
    h5_path, entry = _clean_traj(root, m)
    T = entry["T"]
    with h5py.File(h5_path, "r") as f:
        assert "valid_traj_mask" not in f and "stats" not in f
        t = f[entry["key"]]
        # JSON-row datasets
        for key in ["obs/agent/qpos", "obs/agent/qvel", *(f"actions/{k}" for k in ACTION_KEYS)]:
            ds = t[key]
            assert ds.shape == (T, 2000) and ds.dtype == np.uint8 and ds.compression == "lzf"
        assert set(t["actions"].keys()) == ACTION_KEYS
        assert set(t["obs/agent"].keys()) == {"qpos", "qvel"}
        qpos = [_row(r) for r in t["obs/agent/qpos"][()]]
        for q in qpos:
            assert set(q) == {"base", "arm", "gripper"}
            assert q["base"] == [] and len(q["arm"]) == 7 and len(q["gripper"]) == 2
            assert all(0.0 <= g <= 0.824033 for g in q["gripper"])
        arm = np.array([q["arm"] for q in qpos])
        assert np.abs(np.diff(arm, axis=0)).max() < 0.2  # smooth at 15 Hz
        assert max(q["gripper"][0] for q in qpos) > 0.3  # the gripper closes at some point
        raw0 = t["obs/agent/qpos"][0].tobytes().rstrip(b"\x00").decode()
        assert raw0 == json.dumps(qpos[0], sort_keys=True, separators=(",", ":"))
        for k in ACTION_KEYS:
            rows = [_row(r) for r in t[f"actions/{k}"][()]]
            assert rows[-1] == {}  # done sentinel
            assert all(rows[i] for i in range(T - 1))
            assert all(set(r) <= {"arm", "gripper"} for r in rows)
        ee = _row(t["actions/ee_pose"][5])["arm"]
        assert len(ee) == 7 and abs(np.linalg.norm(ee[3:]) - 1) < 1e-4
        assert len(_row(t["actions/ee_twist"][5])["arm"]) == 6

        # float arrays
        extra = t["obs/extra"]
        assert extra["robot_base_pose"].shape == (T, 7)
        assert extra["robot_base_pose"].dtype == np.float32
        tcp = extra["tcp_pose"][()]
        assert tcp.shape == (T, 7) and tcp.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(tcp[:, 3:], axis=1), 1.0, atol=1e-5)
        pts_group = extra["object_image_points"]
        assert set(pts_group.keys()) == {"pickup_obj", "place_receptacle"}
        for obj in pts_group:
            assert set(pts_group[obj].keys()) == {WRIST, CHECK_CAMERA}
            for cam in pts_group[obj]:
                pts = pts_group[obj][cam]["points"][()]
                n = pts_group[obj][cam]["num_points"][()]
                assert pts.shape == (T, 10, 2) and pts.dtype == np.float32
                assert n.shape == (T, 1) and n.dtype == np.int32
                finite = np.isfinite(pts[..., 0])
                np.testing.assert_array_equal(finite.sum(axis=1), n[:, 0])
                assert np.all(pts[finite] >= 0) and np.all(pts[finite] < 1)
            assert pts_group[obj][CHECK_CAMERA]["num_points"][0, 0] > 0

        for cam, fovy in ((WRIST, 58.0), (CHECK_CAMERA, 45.0)):
            sp = t[f"obs/sensor_param/{cam}"]
            c2w, ext, K = sp["cam2world_gl"][()], sp["extrinsic_cv"][()], sp["intrinsic_cv"][()]
            assert c2w.shape == (T, 4, 4) and ext.shape == (T, 3, 4) and K.shape == (T, 3, 3)
            assert c2w.dtype == ext.dtype == K.dtype == np.float32
            np.testing.assert_allclose(ext, np.linalg.inv(c2w.astype(np.float64))[:, :3],
                                       atol=1e-4)
            focal = 92.0 / np.tan(np.deg2rad(fovy) / 2)
            np.testing.assert_allclose(K[0], [[focal, 0, 160], [0, focal, 92], [0, 0, 1]],
                                       rtol=1e-5)

        sensor_data = t["obs/sensor_data"]
        assert isinstance(sensor_data, h5py.Group) and len(sensor_data) == 0

        actors = t["env_states/actors"]
        assert len(actors) == 2 and all(actors[a].shape == (T, 13) for a in actors)
        assert t["env_states/articulations/panda"].shape == (T, 31)

        scene_raw = t["obs_scene"]
        assert scene_raw.shape == () and scene_raw.compression is None
        scene = json.loads(scene_raw[()].decode() if isinstance(scene_raw[()], bytes)
                           else scene_raw[()])
        assert {"task_type", "task_description", "policy_dt_ms", "referral_expressions", "text",
                "object_name", "place_receptacle_name"} <= set(scene)
        assert round(1000 / scene["policy_dt_ms"]) == 15
        assert scene["object_name"] in actors and scene["place_receptacle_name"] in actors

        rewards, term, trunc = t["rewards"][()], t["terminated"][()], t["truncated"][()]
        success, fail = t["success"][()], t["fail"][()]
        assert rewards.dtype == np.float32 and rewards.shape == (T,)
        assert term.dtype == trunc.dtype == success.dtype == fail.dtype == bool
        assert term[-1] and not term[:-1].any() and not trunc.any()
        assert success[-1] and np.array_equal(fail, ~success)
        for name in ("rewards", "terminated", "success", "fail"):
            assert t[name].compression == "lzf"


def test_video_frame_counts(sample):
    root, m = sample
    checked = 0
    for f in m["files"]:
        for t in f["trajectories"]:
            for key, v in t["videos"].items():
                path = root / Path(f["path"]).parent / v["file"]
                assert key in (WRIST, f"{WRIST}_depth", CHECK_CAMERA)
                if v["status"] == "missing":
                    assert not path.exists()
                elif v["status"] == "truncated":
                    with pytest.raises(VideoError):
                        count_frames(path)
                else:
                    n = count_frames(path)
                    assert n == v["frames"]
                    assert (n == t["T"]) == (v["status"] != "wrong_frame_count")
                    checked += 1
            if t["case"] == "clean":
                assert set(t["videos"]) == {WRIST, f"{WRIST}_depth", CHECK_CAMERA}
    assert checked > 50
    # One decode to make sure the content is real video of the right size.
    h5_path, entry = _clean_traj(root, m)
    rgb = decode_frames_at(h5_path.parent / entry["videos"][CHECK_CAMERA]["file"], [0])[0]
    assert rgb.shape == (184, 320, 3)


# --------------------------------------------------------------------------- manifest


def test_manifest_covers_every_rule(sample):
    _, m = sample
    assert set(m["rules_covered"]) == set(RULE_IDS)
    assert m["check_visibility"] == PAIRS
    reasons = [t["expected"]["reason"] for f in m["files"] for t in f["trajectories"]]
    for rule in RULE_IDS:
        if rule != "unreadable_file":
            assert rule in reasons, rule
    assert any(f["expected_file"] == {"valid": False, "reason": "unreadable_file"}
               for f in m["files"])
    kinds = {f["kind"] for f in m["files"]}
    assert kinds == {"regular", "old_object_image_points", "nonconsecutive", "unreadable"}
    # Planted cases are spread over the regular files, not piled into one.
    per_file = [sum(not t["expected"]["valid"] for t in f["trajectories"])
                for f in m["files"] if f["kind"] == "regular"]
    assert min(per_file) >= 2
    assert m["totals"]["valid"] + m["totals"]["invalid"] == m["totals"]["trajectories"]


def test_manifest_matches_files(sample):
    root, m = sample
    for f in m["files"]:
        path = root / f["path"]
        if not f["readable"]:
            with pytest.raises(OSError):
                h5py.File(path, "r")
            continue
        with h5py.File(path, "r") as h5:
            keys = sorted((k for k in h5 if k.startswith("traj_")),
                          key=lambda k: int(k.split("_")[1]))
        assert keys == [t["key"] for t in f["trajectories"]]
        assert len(f["expected_mask"]) == len(keys)
        assert f["expected_mask"] == [t["expected"]["valid"] for t in f["trajectories"]]
        if f["kind"] == "nonconsecutive":
            assert keys == ["traj_0", "traj_1", "traj_3"] and not any(f["expected_mask"])
    # The expected index lists exactly the valid trajectories with their untrimmed T.
    index = m["expected_index"]["."]
    listed = {(h, p, k): T for h, files in index.items() for p, trajs in files.items()
              for k, T in trajs.items()}
    valid = {(f["house"], f["path"], t["key"]): t["T"] for f in m["files"]
             for t in f["trajectories"] if t["expected"]["valid"]}
    assert listed == valid


def _reference_verdict(traj: h5py.Group, h5_dir: Path, video_entries: dict) -> str | None:
    """Validator rules in the original's order; repair = 'link every mp4 that exists'."""
    actions = traj.get("actions")
    if actions is None or len(actions) == 0:
        return "no_actions"
    n = None
    for k in actions:
        ds = actions[k]
        n = ds.shape[0] if n is None else n
        if ds.shape[0] != n:
            return "action_length_mismatch"
        if n < 3:
            return "too_few_steps"
        try:
            [_row(r) for r in ds[()]]
        except json.JSONDecodeError:
            return "action_json"
    if "obs/agent" not in traj:
        return "no_agent"
    agent = traj["obs/agent"]
    if "qpos" not in agent or "qvel" not in agent:
        return "agent_missing_key"
    for k in agent:
        if agent[k].shape[0] != n:
            return "agent_length_mismatch"
        try:
            [_row(r) for r in agent[k][()]]
        except json.JSONDecodeError:
            return "agent_json"
    pts = traj.get("obs/extra/object_image_points")
    if pts is not None:
        first = None if isinstance(pts, h5py.Group) else _row(pts[0])
        for cam, obj in PAIRS:
            container = pts if first is None else first
            if obj not in container:
                return "visibility_object_missing"
            if cam not in container[obj]:
                return "visibility_camera_missing"
            visible = (container[obj][cam]["num_points"][0, 0] > 0 if first is None
                       else len(container[obj][cam]) > 0)
            if not visible:
                return "visibility_not_visible"
    cameras = list(traj["obs/sensor_param"])
    linked = {k: v for k, v in video_entries.items() if (h5_dir / v["file"]).exists()}
    if not linked or any(c not in linked for c in cameras):
        return "video_missing"
    for key, v in linked.items():
        path = h5_dir / v["file"]
        try:
            frames = count_frames(path)
            if frames != traj["obs/agent/qpos"].shape[0]:
                return "video_frame_count"
            decode_frames_at(path, frames_to_check_indices(frames, 3))
        except VideoError:
            return "video_undecodable"
    return None


def test_expectations_hold_under_reference_rules(sample):
    root, m = sample
    seen = set()
    for f in m["files"]:
        if not f["readable"] or f["kind"] == "nonconsecutive":
            continue
        path = root / f["path"]
        with h5py.File(path, "r") as h5:
            for t in f["trajectories"]:
                got = _reference_verdict(h5[t["key"]], path.parent, t["videos"])
                assert got == t["expected"]["reason"], (f["path"], t["key"], t["case"])
                seen.add(t["case"])
    assert {"no_actions_group", "empty_actions_group", "video_missing_all",
            "video_corrupt_payload", "min_steps_boundary", "no_depth_video",
            "wrist_not_visible", "old_format", "old_format_not_visible"} <= seen


def test_old_format_file(sample):
    root, m = sample
    f = next(f for f in m["files"] if f["kind"] == "old_object_image_points")
    with h5py.File(root / f["path"], "r") as h5:
        for t in f["trajectories"]:
            ds = h5[t["key"]]["obs/extra/object_image_points"]
            assert isinstance(ds, h5py.Dataset) and ds.dtype == np.uint8
            assert ds.shape == (t["T"], 2000)
            row0 = _row(ds[0])
            assert set(row0) == {"pickup_obj", "place_receptacle"}
            assert all(len(p) == 2 for p in row0["pickup_obj"][CHECK_CAMERA])


# --------------------------------------------------------------------------- options


def _small(root, **kw):
    args = dict(houses=1, files_per_house=1, trajs_per_file=2, steps=(5, 8), width=64,
                height=48, with_invalid=False, with_unreadable=False)
    args.update(kw)
    return generate_molmo_dataset(root, **args)


def _contents(root: Path) -> dict:
    out = {}
    for p in sorted(root.rglob("*.h5")):
        with h5py.File(p, "r") as h5:
            def visit(name, obj, rel=str(p.relative_to(root))):
                if isinstance(obj, h5py.Dataset):
                    out[(rel, name)] = obj[()]
            h5.visititems(visit)
    return out


def test_deterministic_for_a_seed(tmp_path):
    m1 = _small(tmp_path / "a", seed=7)
    m2 = _small(tmp_path / "b", seed=7)
    m3 = _small(tmp_path / "c", seed=8)
    assert m1 == m2
    a, b, c = _contents(tmp_path / "a"), _contents(tmp_path / "b"), _contents(tmp_path / "c")
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k], err_msg=str(k))
        else:
            assert a[k] == b[k]
    videos_a = sorted((tmp_path / "a").rglob("*.mp4"))
    assert [p.read_bytes() for p in videos_a] == [
        (tmp_path / "b" / p.relative_to(tmp_path / "a")).read_bytes() for p in videos_a]
    qpos_key = next(k for k in a if k[1].endswith("obs/agent/qpos"))
    assert m3 != m1 or not np.array_equal(a[qpos_key], c.get(qpos_key))


def test_splits_and_no_video(tmp_path):
    m = _small(tmp_path, splits=["train", "val"], video=False, with_invalid=True,
               with_unreadable=True)
    assert (tmp_path / "train").is_dir() and (tmp_path / "val").is_dir()
    assert not list(tmp_path.rglob("*.mp4"))
    assert m["assumes"]["video_checks"] is False
    assert not {"video_missing", "video_frame_count", "video_undecodable"} & set(
        m["rules_covered"])
    assert set(m["expected_index"]) == {"train", "val"}
    train_houses = {f["house"] for f in m["files"] if f["split"] == "train"}
    val_houses = {f["house"] for f in m["files"] if f["split"] == "val"}
    assert train_houses and val_houses and not train_houses & val_houses
    for f in m["files"]:
        assert f["path"].startswith(f["split"] + "/")
    for split, index in m["expected_index"].items():
        for house, files in index.items():
            for rel in files:
                assert (tmp_path / split / rel).is_file() and rel.startswith(house + "/")


def test_custom_cameras(tmp_path):
    m = _small(tmp_path, cameras=[("wrist_camera_zed_mini", False), "randomized_zed2_analogue_1"],
               with_invalid=True)
    # Without the reference exo camera the expectations move to the remaining static one.
    assert m["check_visibility"] == [["randomized_zed2_analogue_1", "pickup_obj"],
                                     ["randomized_zed2_analogue_1", "place_receptacle"]]
    assert not list(tmp_path.rglob("*_depth_*.mp4"))
    assert "depth_video_frame_count" not in {t["case"] for f in m["files"]
                                             for t in f["trajectories"]}


def test_rejects_bad_parameters(tmp_path):
    with pytest.raises(ValueError):
        generate_molmo_dataset(tmp_path, steps=(2, 5))
    with pytest.raises(ValueError):
        generate_molmo_dataset(tmp_path, width=321)
