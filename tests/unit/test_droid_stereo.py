"""Stereo depth from side-by-side MP4s: geometry, accuracy against the synthetic scene's
known depth (OpenCV SGBM and the torch block matcher on CPU), invalid pixels, and the
per-episode depth step (depth.mkv + depth_meta.json, findings per camera)."""

from __future__ import annotations

import json
import av
import numpy as np
import pytest

from robocurate.droid import ffv1, stereo
from robocurate.droid.depth import episode_depth
from robocurate.samples import droid_stereo as ds

# A quarter of DROID's 1280x720 ZED 2 view (fx ~530 px, baseline 0.12 m) keeps tests fast.
W, H = 320, 180
CAM = dict(fx=132.5, fy=132.5, cx=159.5, cy=89.5, width=W, height=H)
BASELINE = 0.12
SEED = 7
# Measured at this size through H.264 (crf 18): SGBM median |error| ~9 mm (0.8 %),
# torch block matching ~6 mm (0.5 %); 1 px of disparity is ~110 mm at 1.5 m here.
MAX_MEDIAN_ERR_M = 0.02
MAX_MEDIAN_REL = 0.02


def _calib(**over):
    return {**CAM, "baseline_m": BASELINE, **over}


@pytest.fixture(scope="module")
def episode(tmp_path_factory):
    root = tmp_path_factory.mktemp("episode")
    info = ds.write_stereo_mp4(root / "recordings" / "MP4" / "111-stereo.mp4", **CAM,
                               baseline_m=BASELINE, frames=3, seed=SEED)
    return root, info


def _grey_frames(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="gray") for f in c.decode(video=0)]


def _errors(mm, frame):
    gt = ds.true_depth(**CAM, seed=SEED, frame=frame)
    valid = mm > 0
    err = np.abs(mm[valid] / 1000.0 - gt[valid])
    return valid, err, err / gt[valid]


def test_geometry_checks():
    assert stereo.stereo_geometry(_calib()) == (132.5, 0.12)
    with pytest.raises(stereo.CalibrationError, match="baseline_m"):
        stereo.stereo_geometry({"fx": 500.0})
    with pytest.raises(stereo.CalibrationError, match="metres"):
        stereo.stereo_geometry({"fx": 500.0, "baseline_m": 119.98})  # millimetres by mistake
    with pytest.raises(stereo.CalibrationError, match="positive"):
        stereo.stereo_geometry({"fx": -1, "baseline_m": 0.12})


def test_disparity_to_depth():
    disp = np.array([[0.0, -1.0, 1.0, 53.0, 636.0, 1e-4]], np.float32)
    mm = stereo.disparity_to_depth_mm(disp, 530.0, 0.12, min_depth=0.1)
    # 530 * 0.12 / 53 = 1.2 m; 636 px = 0.1 m (kept: >= min_depth); 1e-4 px -> beyond 65.535 m.
    assert mm.tolist() == [[0, 0, 63600, 1200, 100, 0]]
    assert stereo.disparity_to_depth_mm(disp, 530.0, 0.12, min_depth=0.2).tolist() == [[0, 0, 63600, 1200, 0, 0]]
    assert stereo.disparity_to_depth_mm(disp, 530.0, 0.12, max_depth=2.0).tolist() == [[0, 0, 0, 1200, 100, 0]]


def test_split_and_disparity_range():
    sbs = np.arange(2 * 6 * 4).reshape(2, 12 * 2)[:, :12]
    left, right = stereo.split_side_by_side(sbs)
    assert left.shape == right.shape == (2, 6) and np.array_equal(right, sbs[:, 6:])
    with pytest.raises(ValueError):
        stereo.split_side_by_side(np.zeros((2, 7)))
    cfg = stereo.StereoConfig(min_depth=0.1)
    assert cfg.num_disparities(530.0, 0.12) == 256          # 636 px needed, capped
    assert stereo.StereoConfig(min_depth=0.5).num_disparities(530.0, 0.12) == 128
    assert stereo.StereoDepth(_calib(fx=530.0), config=cfg).min_measurable_depth_m == pytest.approx(0.2484, abs=1e-4)


def test_scene_ground_truth():
    gt = ds.true_depth(**CAM, seed=SEED)
    assert gt.shape == (H, W) and gt.dtype == np.float32
    assert 0.45 < gt.min() < 0.7 and 1.2 < gt.max() < 2.2
    # Cards cover a good part of the view; the background is most of it.
    assert 0.15 < (gt < 1.15).mean() < 0.6
    # With no baseline the two views are the same image: rendering is view-consistent.
    left, right = ds.render_stereo_pair(**CAM, baseline_m=0.0, seed=SEED)
    assert np.array_equal(left, right)
    assert left.std() > 20  # textured enough to match
    # Frames differ (cards drift), and the ground truth follows them.
    assert not np.array_equal(gt, ds.true_depth(**CAM, seed=SEED, frame=2))


def test_sgbm_depth_accuracy(episode):
    root, info = episode
    frames = _grey_frames(info["path"])
    assert len(frames) == 3 and frames[0].shape == (H, 2 * W)
    sd = stereo.StereoDepth(_calib(), method="sgbm", config=stereo.StereoConfig(min_depth=0.3))
    for i in (0, 2):
        mm = sd.frame_depth_mm(frames[i])
        assert mm.dtype == np.uint16 and mm.shape == (H, W)
        valid, err, rel = _errors(mm, i)
        assert valid.mean() > 0.6
        assert np.median(err) < MAX_MEDIAN_ERR_M and np.median(rel) < MAX_MEDIAN_REL
        assert (rel > 0.1).mean() < 0.05
        # No match is possible in the left strip the disparity search cannot reach: 0 there.
        assert not mm[:, : sd.num_disparities - 1].any()


def test_torch_block_matching_accuracy_on_cpu(episode):
    pytest.importorskip("torch")
    root, info = episode
    frame = _grey_frames(info["path"])[1]
    sd = stereo.StereoDepth(_calib(), method="torch", device="cpu", config=stereo.StereoConfig(min_depth=0.3))
    left, right = stereo.split_side_by_side(frame)
    disp = sd.disparity(left, right)
    assert disp.dtype == np.float32 and disp.shape == (H, W) and disp.min() >= 0
    # Sub-pixel refinement: the disparities are not integer-valued.
    d = disp[disp > 0]
    assert np.mean(np.abs(d - np.round(d)) > 0.05) > 0.3
    mm = stereo.disparity_to_depth_mm(disp, sd.fx, sd.baseline_m, min_depth=0.3)
    valid, err, rel = _errors(mm, 1)
    assert valid.mean() > 0.6
    assert np.median(err) < MAX_MEDIAN_ERR_M and np.median(rel) < MAX_MEDIAN_REL
    assert (rel > 0.1).mean() < 0.05
    assert np.all(mm[valid] >= 300)


def test_min_depth_makes_near_pixels_invalid(episode):
    root, info = episode
    frame = _grey_frames(info["path"])[0]
    gt = ds.true_depth(**CAM, seed=SEED, frame=0)
    sd = stereo.StereoDepth(_calib(), config=stereo.StereoConfig(min_depth=0.7))
    mm = sd.frame_depth_mm(frame)
    assert mm[mm > 0].min() >= 700
    near = gt < 0.66
    assert near.mean() > 0.02
    assert (mm[near] > 0).mean() < 0.02


def test_episode_depth_outputs_and_findings(episode, tmp_path):
    root, info = episode
    mp4 = root / "recordings" / "MP4"
    (mp4 / "222-stereo.mp4").write_bytes(b"\x00\x01not an mp4" * 64)
    data = (mp4 / "111-stereo.mp4").read_bytes()
    (mp4 / "333-stereo.mp4").write_bytes(data[: len(data) // 2])  # truncated: no index
    (mp4 / "555-stereo.mp4").write_bytes(data)
    calib = {s: _calib() for s in ("111", "222", "333", "444", "555")}
    calib["555"] = {"fx": 132.5}  # no baseline
    calib["666"] = _calib()
    out = tmp_path / "out"
    manifest = episode_depth(root, out, serials=["111", "222", "333", "444", "555", "666", "777"],
                             calibration=calib, source="stereo", min_depth=0.3, device="cpu")
    json.dumps(manifest)  # JSON-able
    assert list(manifest["cameras"]) == ["111"]
    rules = {f["item"]: f["rule"] for f in manifest["findings"]}
    assert rules == {"222": "depth.video_unreadable", "333": "depth.video_unreadable",
                     "444": "depth.video_missing", "555": "depth.bad_calibration",
                     "666": "depth.video_missing", "777": "depth.no_calibration"}
    assert all(f["path"].endswith(f"{f['item']}-stereo.mp4") for f in manifest["findings"])

    cam_dir = out / "recordings" / "111"
    assert sorted(p.name for p in cam_dir.iterdir()) == ["depth.mkv", "depth_meta.json"]
    for s in ("222", "333", "444", "555"):
        assert not (out / "recordings" / s).exists() or not any((out / "recordings" / s).iterdir())
    meta = json.loads((cam_dir / "depth_meta.json").read_text())
    assert meta["format"] == "ffv1_gray16le" and meta["unit"] == "millimeters" and meta["scale"] == 1000
    assert (meta["width"], meta["height"], meta["frame_count"], meta["fps"]) == (W, H, 3, 15.0)
    assert meta["source"] == "stereo" and meta["method"] == "opencv_sgbm"
    assert meta["baseline_m"] == BASELINE and meta["fx"] == 132.5

    depth = list(ffv1.read_depth_mm(cam_dir / "depth.mkv"))
    assert len(depth) == 3
    valid_fraction = np.mean([np.count_nonzero(d) / d.size for d in depth])
    assert meta["valid_pixel_fraction"] == pytest.approx(valid_fraction, abs=1e-6)
    assert manifest["cameras"]["111"]["valid_pixel_fraction"] == meta["valid_pixel_fraction"]
    metres = list(ffv1.read_depth(cam_dir / "depth.mkv"))
    for i, m in enumerate(metres):
        gt = ds.true_depth(**CAM, seed=SEED, frame=i)
        v = m > 0
        assert np.median(np.abs(m[v] - gt[v])) < MAX_MEDIAN_ERR_M


def test_episode_depth_rescales_calibration_and_falls_back(episode, tmp_path):
    root, _ = episode
    # Calibration made for the full-size (4x) sensor mode: intrinsics scale, baseline not.
    big = _calib(fx=530.0, fy=530.0, cx=638.0, cy=358.0, width=4 * W, height=4 * H)
    manifest = episode_depth(root, tmp_path, serials=["111"], calibration={"111": big},
                             min_depth=0.3, device="cpu")
    assert [f["rule"] for f in manifest["findings"]] == ["depth.calibration_rescaled"]
    meta = json.loads((tmp_path / "recordings" / "111" / "depth_meta.json").read_text())
    assert meta["fx"] == pytest.approx(132.5)
    bad_aspect = _calib(width=W, height=2 * H)
    manifest = episode_depth(root, tmp_path / "b", serials=["111"], calibration={"111": bad_aspect})
    assert [f["rule"] for f in manifest["findings"]] == ["depth.calibration_size_mismatch"]


def test_zed_source_without_sdk_names_stereo(episode, tmp_path):
    import importlib.util
    if importlib.util.find_spec("pyzed") is not None:
        pytest.skip("pyzed is installed here")
    root, _ = episode
    manifest = episode_depth(root, tmp_path, serials=["111"], calibration={"111": _calib()},
                             source="zed", min_depth=0.3, device="cpu")
    assert manifest["cameras"] == {}
    [finding] = manifest["findings"]
    assert finding["rule"] == "depth.zed_unavailable" and "'stereo'" in finding["message"]
    bad = episode_depth(root, tmp_path, serials=["111"], calibration={}, source="lidar")
    assert bad["findings"][0]["rule"] == "depth.bad_source"


def test_cuda_request_without_cuda_falls_back_to_sgbm(episode, tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    root, _ = episode
    manifest = episode_depth(root, tmp_path, serials=["111"], calibration={"111": _calib()},
                             min_depth=0.3, device="cuda")
    assert [f["rule"] for f in manifest["findings"]] == ["depth.no_cuda"]
    assert manifest["cameras"]["111"]["method"] == "opencv_sgbm"
