"""One DROID episode in metadata mode on generated raw data: outputs, dtypes, fps,
quality, extrinsics, bad input and atomicity."""

import json
import shutil

import h5py
import numpy as np
import pytest

from robocurate.droid import episode as E
from robocurate.droid.kinematics import pose6_to_matrix
from robocurate.droid.layout import discover_episodes
from robocurate.droid.projection import project_tracks
from robocurate.samples.droid import generate_droid_episodes

SEED_KEYS = {
    "tracks_3d": np.float32, "contact_points_local": np.float64, "gripper_poses": np.float64,
    "gripper_positions": np.float64, "cartesian_positions": np.float64,
    "contact_centroids": np.float32, "contact_frames": np.float32,
    "left_contact_frames": np.float32, "right_contact_frames": np.float32,
    "normalized_tracks_3d": np.float32, "normalized_centroids": np.float32,
    "normalized_frames": np.float32, "normalized_left_frames": np.float32,
    "normalized_right_frames": np.float32, "cumulative_distance_mm": np.float64,
    "frame_to_normalized_idx": np.int32, "normalized_step_size_mm": None,
    "num_normalized_steps": None, "num_frames": None, "num_points_per_finger": None,
    "fps": None, "cameras_with_2d_tracks": None}


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("droid-raw")
    manifest = generate_droid_episodes(root, episodes=3, seed=11, steps=(40, 50))
    eps, _ = discover_episodes(root)
    return root, manifest, {e.rel: e for e in eps}


def _opts(raw_root, **kw):
    return E.TrackOptions(intrinsics_source="conf", calib_dir=str(raw_root / "calibration"),
                          points_per_finger=16, **kw)


def _clean(manifest):
    return [e for e in manifest["episodes"] if e["fault"] is None]


def test_outputs_keys_dtypes_and_quality(raw, tmp_path):
    root, manifest, eps = raw
    info = _clean(manifest)[0]
    m = E.process_episode(eps[info["rel"]], tmp_path, _opts(root))
    assert m["status"] == "ok", m["findings"]
    out = tmp_path / info["rel"]
    assert m["output"] == str(out)
    staging = tmp_path / E.STAGING
    assert not staging.exists() or not any(staging.iterdir())
    tr = np.load(out / "tracks.npz", allow_pickle=False)
    for key, dtype in SEED_KEYS.items():
        assert key in tr.files, key
        if dtype is not None:
            assert tr[key].dtype == dtype, key
    T = info["steps"]
    assert tr["tracks_3d"].shape == (T, 32, 3) and int(tr["num_frames"]) == T
    assert int(tr["num_points_per_finger"]) == 16
    M = int(tr["num_normalized_steps"])
    assert tr["normalized_tracks_3d"].shape == (M, 32, 3)
    serials = [info["wrist"], *info["external"]]
    assert sorted(tr["cameras_with_2d_tracks"].tolist()) == sorted(serials)
    for s in serials:
        assert tr[f"tracks_2d_{s}"].shape == (T, 32, 2) and tr[f"tracks_2d_{s}"].dtype == np.float32
        assert tr[f"intrinsics_{s}"].shape == (3, 3)
        assert tr[f"image_size_{s}"].tolist() == [1280, 720]
        intr = json.loads((out / "recordings" / s / "intrinsics.json").read_text())
        assert list(intr) == ["fx", "fy", "cx", "cy", "width", "height", "k1", "k2", "p1", "p2", "k3"]
        assert intr["fx"] == pytest.approx(tr[f"intrinsics_{s}"][0, 0])
    q = json.loads((out / "quality.json").read_text())
    for k in ("episode_id", "source_path", "outcome", "num_frames", "num_track_points",
              "external_cameras", "wrist_camera", "cameras_with_2d_tracks", "cam2base_calibration"):
        assert k in q, k
    assert q["source_path"] == info["rel"] and q["num_track_points"] == 32
    assert q["wrist_camera"] == info["wrist"] and q["external_cameras"] == info["external"]
    assert q["gripper"]["range"] == pytest.approx(float(np.ptp(tr["gripper_positions"])), abs=1e-5)
    pl = np.linalg.norm(np.diff(tr["contact_centroids"].astype(float), axis=0), axis=1).sum()
    assert q["path_length_m"]["contact_centroid"] == pytest.approx(pl, abs=1e-5)
    for s in serials:
        cq = q["cameras"][s]
        uv = tr[f"tracks_2d_{s}"]
        with np.errstate(invalid="ignore"):
            inside = ((uv[..., 0] >= 0) & (uv[..., 0] < 1280) & (uv[..., 1] >= 0) & (uv[..., 1] < 720)).mean()
        assert cq["fraction_inside_image"] == pytest.approx(inside, abs=1e-6)
        assert cq["fraction_inside_image"] > 0.5  # the sample's cameras look at the gripper
    assert q["timing"]["dropped_steps"] == (1 if info["dropped_step"] else 0)


def test_fps_comes_from_the_timestamps(raw, tmp_path):
    root, manifest, eps = raw
    info = _clean(manifest)[0]
    assert E.process_episode(eps[info["rel"]], tmp_path / "a", _opts(root))["fps"] == \
        pytest.approx(15.0, abs=0.05)
    # The same episode recorded at 10 Hz, with one dropped step.
    src = eps[info["rel"]].path
    copy = tmp_path / "raw10" / info["rel"]
    shutil.copytree(src, copy)
    with h5py.File(copy / "trajectory.h5", "r+") as f:
        n = len(f["observation/timestamp/control/step_start"])
        k = np.arange(n)
        k[n // 2:] += 1
        f["observation/timestamp/control/step_start"][...] = 1_700_000_000_000 + k * 100
    [ep10], _ = discover_episodes(tmp_path / "raw10")
    m = E.process_episode(ep10, tmp_path / "b", _opts(root))
    assert m["fps"] == pytest.approx(10.0)
    q = json.loads((tmp_path / "b" / info["rel"] / "quality.json").read_text())
    assert q["timing"]["gaps"] == 1 and q["timing"]["dropped_steps"] == 1
    assert float(np.load(tmp_path / "b" / info["rel"] / "tracks.npz")["fps"]) == pytest.approx(10.0)
    assert any(f["rule"] == "dropped_steps" for f in m["findings"])


def test_extrinsics_wrist_through_the_end_effector(raw, tmp_path):
    root, manifest, eps = raw
    info = _clean(manifest)[1]
    E.process_episode(eps[info["rel"]], tmp_path, _opts(root))
    out = tmp_path / info["rel"]
    ex = np.load(out / "extrinsics.npz", allow_pickle=False)
    tr = np.load(out / "tracks.npz", allow_pickle=False)
    with h5py.File(eps[info["rel"]].path / "trajectory.h5") as f:
        wrist_h5 = f[f"observation/camera_extrinsics/{info['wrist']}_left"][()]
        ext_h5 = f[f"observation/camera_extrinsics/{info['external'][0]}_left"][0]
    np.testing.assert_allclose(ex["wrist_extrinsics"], pose6_to_matrix(wrist_h5), atol=1e-9)
    np.testing.assert_allclose(ex[f"external_{info['external'][0]}"], pose6_to_matrix(ext_h5))
    assert str(ex["wrist_serial"]) == info["wrist"] and int(ex["num_frames"]) == info["steps"]
    # The 2D tracks are the 3D tracks seen through exactly these poses and intrinsics.
    for s in info["external"]:
        ref = project_tracks(tr["tracks_3d"], ex[f"external_{s}"], tr[f"intrinsics_{s}"], 0.1)
        np.testing.assert_array_equal(tr[f"tracks_2d_{s}"], ref)
    # Without the gripper offset the wrist pose is carried from step 0 (original method).
    copy = tmp_path / "nooff" / info["rel"]
    shutil.copytree(eps[info["rel"]].path, copy)
    with h5py.File(copy / "trajectory.h5", "r+") as f:
        del f[f"observation/camera_extrinsics/{info['wrist']}_left_gripper_offset"]
    [ep2], _ = discover_episodes(tmp_path / "nooff")
    E.process_episode(ep2, tmp_path / "o2", _opts(root))
    ex2 = np.load(tmp_path / "o2" / info["rel"] / "extrinsics.npz")
    np.testing.assert_allclose(ex2["wrist_extrinsics"], ex["wrist_extrinsics"], atol=1e-9)
    q = json.loads((tmp_path / "o2" / info["rel"] / "quality.json").read_text())
    assert q["extrinsics"]["wrist_method"] == "h5_step0"


def test_table_source_and_superset_extrinsics(raw, tmp_path):
    root, manifest, eps = raw
    info = _clean(manifest)[0]
    ep = eps[info["rel"]]
    a = E.process_episode(ep, tmp_path / "conf", _opts(root))
    b = E.process_episode(ep, tmp_path / "table", E.TrackOptions(
        intrinsics_source="table", intrinsics_table=manifest["intrinsics_table"],
        points_per_finger=16))
    assert a["status"] == b["status"] == "ok"
    ta = np.load(tmp_path / "conf" / info["rel"] / "tracks.npz")
    tb = np.load(tmp_path / "table" / info["rel"] / "tracks.npz")
    s = info["external"][0]
    np.testing.assert_allclose(ta[f"tracks_2d_{s}"], tb[f"tracks_2d_{s}"], atol=1e-2, equal_nan=True)
    # Superset: digit-only keys, one camera moved; the other camera is missing from it.
    moved = [0.3, 0.6, 0.5, -2.0, 0.0, -2.5]
    sup = tmp_path / "superset.json"
    sup.write_text(json.dumps({ep.episode_id: {s: moved, f"{s}_right": [0] * 6}}))
    from robocurate.droid.layout import SupersetIndex
    ep.superset_key = SupersetIndex.load(sup).match(ep)
    c = E.process_episode(ep, tmp_path / "sup", _opts(root, extrinsics_source="superset",
                                                          superset=str(sup)))
    ex = np.load(tmp_path / "sup" / info["rel"] / "extrinsics.npz")
    np.testing.assert_allclose(ex[f"external_{s}"], pose6_to_matrix(np.array(moved)))
    assert [(f["rule"], f["item"]) for f in c["findings"]] == [("no_extrinsics", info["external"][1])]
    q = json.loads((tmp_path / "sup" / info["rel"] / "quality.json").read_text())
    assert q["cam2base_calibration"] == {ep.episode_id: {s: moved, f"{s}_right": [0] * 6}}
    assert info["external"][1] not in q["cameras_with_2d_tracks"]


def test_every_fault_gives_its_finding_and_no_half_outputs(raw, tmp_path):
    root, manifest, eps = raw
    for info in manifest["episodes"]:
        if info["fault"] is None:
            continue
        m = E.process_episode(eps[info["rel"]], tmp_path, _opts(root))
        rules = [f["rule"] for f in m["findings"]]
        assert info["expected_rule"] in rules, (info["fault"], rules)
        assert m["status"] == info["expected_status"], info["fault"]
        out = tmp_path / info["rel"]
        if m["status"] == "failed":
            assert not out.exists() and "staging" not in m
        else:
            assert (out / "tracks.npz").is_file()
    staging = tmp_path / E.STAGING
    assert not staging.exists() or not any(staging.iterdir())
    # The camera without intrinsics is named, the others still have their 2D tracks.
    info = next(e for e in manifest["episodes"] if e["fault"] == "camera_without_intrinsics")
    tr = np.load(tmp_path / info["rel"] / "tracks.npz")
    assert manifest["camera_without_intrinsics"] not in tr["cameras_with_2d_tracks"].tolist()
    assert len(tr["cameras_with_2d_tracks"]) == 2


def test_a_failed_write_leaves_no_output_and_a_rerun_replaces(raw, tmp_path, monkeypatch):
    root, manifest, eps = raw
    info = _clean(manifest)[2]
    ep = eps[info["rel"]]
    real = E._write_npz
    calls = []

    def flaky(path, arrays):
        calls.append(path.name)
        if path.name == "extrinsics.npz":
            raise OSError(28, "No space left on device")
        return real(path, arrays)

    monkeypatch.setattr(E, "_write_npz", flaky)
    m = E.process_episode(ep, tmp_path, _opts(root))
    assert m["status"] == "failed" and [f["rule"] for f in m["findings"]] == ["write_failed"]
    assert not (tmp_path / info["rel"]).exists()
    assert (tmp_path / E.STAGING).is_dir()  # kept for inspection, named in the manifest
    assert m["staging"].startswith(str(tmp_path / E.STAGING))
    monkeypatch.setattr(E, "_write_npz", real)
    first = E.process_episode(ep, tmp_path, _opts(root, seed=1))
    again = E.process_episode(ep, tmp_path, _opts(root, seed=2))
    assert first["status"] == again["status"] == "ok"
    local = np.load(tmp_path / info["rel"] / "tracks.npz")["contact_points_local"]
    from robocurate.droid.kinematics import contact_points_local
    np.testing.assert_array_equal(local, contact_points_local(16, seed=2))
    assert [p.name for p in (tmp_path / info["rel"]).parent.iterdir()] == [tmp_path.joinpath(info["rel"]).name]


def test_timing_edge_cases():
    assert E.timing(None, 10)["fps"] is None
    assert E.timing(np.array([5.0]), 1)["fps"] is None
    t = E.timing(np.array([0, 66, 133, 200, 400, 466], float), 6)
    assert t["gaps"] == 1 and t["dropped_steps"] == 2 and t["fps"] == pytest.approx(15.0, abs=0.05)
    assert E.timing(np.array([0, 0, 0], float), 3)["non_increasing"] == 2
