"""React preview panel: geometry, tile order, channel order, projection overlay, preview MP4."""

from __future__ import annotations

import json
from pathlib import Path

import av
import h5py
import numpy as np
import pytest

from robocurate.react.calibration import (Calibration, CalibrationError, CameraCalibration,
                                          _look_at, load_calibration, pose7_to_T, project_mm,
                                          sample_calibration, save_calibration,
                                          write_sample_calibration)
from robocurate.react.layout import DISPLAY_ORDER, cam_aligned_pose
from robocurate.react.panel import (FROZEN_COLOR, GREY, PanelRenderer, ProjectionOverlay,
                                    SIDE_COLORS, cam_tile_origin, gel_tile_origin)
from robocurate.react.preview import write_preview
from robocurate.samples.react import REALSENSE_SERIALS, generate_react_dataset

H, W = 48, 64
# Distinct solid colours per source. RealSense colours are BGR (as in the file), GelSight RGB.
CAM_BGR = {0: (10, 200, 30), 1: (200, 20, 40), 2: (40, 60, 220)}
GEL_RGB = {"left": (230, 120, 20), "right": (20, 140, 210)}
REF_RGB = {"left": (200, 130, 60), "right": (60, 100, 250)}


def solid(color, h=H, w=W):
    return np.broadcast_to(np.array(color, np.uint8), (h, w, 3)).copy()


def write_episode(path: Path, T: int = 12, *, cams=CAM_BGR, gels=GEL_RGB, gel_T=None) -> Path:
    """A tiny raw episode with solid-colour streams and static OptiTrack poses."""
    with h5py.File(path, "w") as f:
        m = f.create_group("metadata")
        m.attrs["fps"] = 30
        m.attrs["realsense_serials"] = list(REALSENSE_SERIALS)
        ts = 1000.0 + np.arange(T) / 30.0
        f["timestamps"] = ts
        for c, col in cams.items():
            f[f"realsense/cam{c}/color"] = np.broadcast_to(solid(col), (T, H, W, 3))
        for side, col in gels.items():
            n = T if gel_T is None else gel_T
            f[f"gelsight/{side}/frames"] = np.broadcast_to(solid(col), (n, H, W, 3))
        ot_t = 1000.0 - 0.05 + np.arange(4 * T + 8) / 120.0
        for body, x in (("motherboard", 0.0), ("sensor_left", 0.1), ("sensor_right", -0.1)):
            pose = np.tile([x, 0.0, 0.8, 0.0, 0.0, 0.0, 1.0], (len(ot_t), 1))
            pose[:, 0] += np.arange(len(ot_t)) * 1e-4  # moving: never "frozen"
            f[f"optitrack/{body}/timestamps"] = ot_t
            f[f"optitrack/{body}/pose"] = pose
    return path


def tile_px(panel, origin, dx=100, dy=100):
    x, y = origin
    return tuple(int(v) for v in panel[y + dy, x + dx])


def render_solid(**kw):
    r = PanelRenderer(refs_rgb={s: solid(c) for s, c in REF_RGB.items()}, **kw)
    cams = [solid(CAM_BGR[c]) for c in range(3)]
    gels = {s: solid(c) for s, c in GEL_RGB.items()}
    return r.render(cams, gels, {"motherboard": None, "sensor_left": None, "sensor_right": None})


# ---------------------------------------------------------------------------- geometry


def test_panel_geometry_and_tile_order():
    panel = render_solid()
    assert panel.shape == (480, 1280, 3) and panel.dtype == np.uint8
    # Row 1: left | middle | right = cam1, cam2, cam0, BGR unchanged.
    assert DISPLAY_ORDER == (1, 2, 0)
    for slot, cam in enumerate((1, 2, 0)):
        assert tile_px(panel, cam_tile_origin(slot)) == CAM_BGR[cam]
        assert tile_px(panel, cam_tile_origin(slot), dx=319, dy=239) == CAM_BGR[cam]
    # Row 2: L raw, L diff, R raw, R diff at x = 0, 240, 480, 720; GelSight RGB -> BGR.
    assert gel_tile_origin("left", False) == (0, 240)
    assert gel_tile_origin("right", True) == (720, 240)
    for side in ("left", "right"):
        raw_bgr = GEL_RGB[side][::-1]
        assert tile_px(panel, gel_tile_origin(side, False)) == raw_bgr
        diff_rgb = np.clip(np.array(GEL_RGB[side]) - REF_RGB[side] + 128, 0, 255)
        assert tile_px(panel, gel_tile_origin(side, True)) == tuple(int(v) for v in diff_rgb[::-1])
    # OptiTrack tile and blank tile: dark background, not a camera colour.
    assert tile_px(panel, (960, 0), dx=300, dy=230) == (0, 0, 0)
    assert tile_px(panel, (960, 240), dx=300, dy=150) == (0, 0, 0)


def test_missing_streams_are_grey_tiles():
    r = PanelRenderer(refs_rgb={"left": solid((1, 2, 3))})
    panel = r.render([None, solid(CAM_BGR[1]), None], {"left": None, "right": None}, {})
    assert tile_px(panel, cam_tile_origin(0)) == CAM_BGR[1]
    assert tile_px(panel, cam_tile_origin(1)) == (GREY,) * 3
    for side in ("left", "right"):
        for diff in (False, True):
            assert tile_px(panel, gel_tile_origin(side, diff)) == (GREY,) * 3


def test_diff_tile_without_reference_is_grey():
    r = PanelRenderer(refs_rgb={})
    panel = r.render([None] * 3, {"left": solid(GEL_RGB["left"]), "right": None}, {})
    assert tile_px(panel, gel_tile_origin("left", True)) == (GREY,) * 3


# ---------------------------------------------------------------------------- projection


def _one_camera_calibration(serial="S0") -> Calibration:
    cam = CameraCalibration(serial, 600.0, 600.0, 320.0, 240.0, 640, 480,
                            _look_at((0.0, -1000.0, 800.0), (0.0, 0.0, 800.0)), "cam")
    return Calibration({serial: cam}, {"left": np.array([0.0, 0.0, -40.0]),
                                       "right": np.array([0.0, 0.0, -40.0])})


def test_projection_math_pinhole():
    cal = _one_camera_calibration()
    cam = cal.cameras["S0"]
    # A point 1 m in front on the optical axis -> principal point; 100 mm to the right
    # (mocap +x is camera right here) -> fx * 100 / 1000 px further.
    uv, front = project_mm(cam, np.array([[0.0, 0.0, 800.0], [100.0, 0.0, 800.0],
                                          [0.0, -2000.0, 800.0]]))
    np.testing.assert_allclose(uv[0], [320.0, 240.0], atol=1e-9)
    np.testing.assert_allclose(uv[1], [380.0, 240.0], atol=1e-9)
    assert front.tolist() == [True, True, False]
    uv_half, _ = project_mm(cam, np.array([[100.0, 0.0, 800.0]]), size=(320, 240))
    np.testing.assert_allclose(uv_half[0], [190.0, 120.0], atol=1e-9)
    T = pose7_to_T([0.1, 0.0, 0.84, 0, 0, 0, 1])
    np.testing.assert_allclose(T[:3, 3], [100.0, 0.0, 840.0])
    assert pose7_to_T(np.zeros(7)) is None


def test_overlay_draws_dot_where_projection_says():
    cal = _one_camera_calibration()
    overlay = ProjectionOverlay(cal, ["S0", "nope", "nope2"])
    r = PanelRenderer(overlay=overlay)
    black = np.zeros((480, 640, 3), np.uint8)
    # Gel centre = pose + (0, 0, -40) mm = (100, 0, 800) mm -> native (380, 240) -> tile (190, 120).
    pose_left = np.array([0.1, 0.0, 0.84, 0.0, 0.0, 0.0, 1.0])
    panel = r.render([black, black, black], {}, {"sensor_left": pose_left})
    cam0_x, cam0_y = cam_tile_origin(DISPLAY_ORDER.index(0))
    uv, _ = project_mm(cal.cameras["S0"], np.array([[100.0, 0.0, 800.0]]), size=(320, 240))
    u, v = int(uv[0, 0]), int(uv[0, 1])
    px = panel[cam0_y + v, cam0_x + u].astype(int)
    assert np.abs(px - SIDE_COLORS["left"]).max() <= 30, px
    # Nothing drawn far from it, nor on the uncalibrated cameras' tiles.
    assert panel[cam0_y + 40, cam0_x + 20].tolist() == [0, 0, 0]
    assert panel[cam0_y + v, cam_tile_origin(0)[0] + u].tolist() == [0, 0, 0]
    # The FROZEN ring: red at 6 px from the centre.
    panel = r.render([black] * 3, {}, {"sensor_left": pose_left}, marks={"left": "FROZEN"})
    ring = panel[cam0_y + v + 6, cam0_x + u].astype(int)
    assert ring[2] > 120 and ring[2] > 2 * max(ring[0], ring[1]), ring
    assert FROZEN_COLOR == (0, 0, 255)


def test_calibration_roundtrip_and_errors(tmp_path):
    p = write_sample_calibration(tmp_path)
    assert p == tmp_path / "calibration.json"
    cal = load_calibration(p)
    assert set(cal.cameras) == set(REALSENSE_SERIALS)
    np.testing.assert_allclose(cal.cameras[REALSENSE_SERIALS[0]].T_mocap_to_cam,
                               sample_calibration().cameras[REALSENSE_SERIALS[0]].T_mocap_to_cam,
                               atol=1e-6)
    doc = json.loads(p.read_text())
    doc["cameras"][REALSENSE_SERIALS[1]]["T_mocap_to_cam"] = [[1, 0], [0, 1]]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(CalibrationError, match="4x4"):
        load_calibration(bad)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(CalibrationError, match="junk.json"):
        load_calibration(tmp_path / "junk.json")
    save_calibration(cal, tmp_path / "again.json")
    assert load_calibration(tmp_path / "again.json").cameras.keys() == cal.cameras.keys()


def test_sample_calibration_keeps_sample_sensors_in_view(tmp_path):
    generate_react_dataset(tmp_path, episodes=1, frames=30, height=32, width=40,
                           with_faults=False)
    cal = sample_calibration()
    gel = cal.gel_center_in_rigid_mm["left"]
    with h5py.File(next((tmp_path / "data").rglob("*.h5")), "r") as f:
        cam_ts = f["timestamps"][()]
        for side in ("left", "right"):
            g = f[f"optitrack/sensor_{side}"]
            poses = cam_aligned_pose(cam_ts, g["timestamps"][()], g["pose"][()])
            pts = np.array([(pose7_to_T(p) @ np.append(gel, 1))[:3] for p in poses])
            for cam in cal.cameras.values():
                uv, front = project_mm(cam, pts)
                assert front.all()
                assert (uv[:, 0] > 20).all() and (uv[:, 0] < 620).all()
                assert (uv[:, 1] > 20).all() and (uv[:, 1] < 460).all()


# ---------------------------------------------------------------------------- preview MP4


def _decode_rgb(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [fr.to_ndarray(format="rgb24") for fr in c.decode(video=0)]


def test_preview_colour_order_in_mp4(tmp_path):
    # cam1 is pure blue in BGR (255, 0, 0) -> must decode as RGB (0, 0, 255);
    # GelSight left is pure red in RGB (255, 0, 0) -> must decode as RGB (255, 0, 0).
    cams = {0: (0, 255, 0), 1: (255, 0, 0), 2: (0, 0, 255)}
    gels = {"left": (255, 0, 0), "right": (0, 0, 255)}
    h5 = write_episode(tmp_path / "episode_000.h5", T=8, cams=cams, gels=gels)
    out = tmp_path / "out" / "episode_000.mp4"
    res = write_preview(h5, out, projection=False,
                        ref_frames={s: solid(c) for s, c in gels.items()})
    assert res["ok"], res["findings"]
    assert res["frames"] == 8 and Path(res["output"]) == out
    frames = _decode_rgb(out)
    assert len(frames) == 8
    fr = frames[4].astype(int)

    def near(px, rgb, tol=12):
        return np.abs(px - np.array(rgb)).max() <= tol

    assert near(fr[120, 160], (0, 0, 255)), fr[120, 160]     # left tile = cam1, blue
    assert near(fr[120, 480], (255, 0, 0)), fr[120, 480]     # middle = cam2, BGR red -> red
    assert near(fr[120, 800], (0, 255, 0)), fr[120, 800]     # right = cam0, green
    assert near(fr[360, 120], (255, 0, 0)), fr[360, 120]     # GelSight L raw: RGB red stays red
    assert near(fr[360, 600], (0, 0, 255)), fr[360, 600]     # GelSight R raw: blue
    assert near(fr[360, 360], (128, 128, 128)), fr[360, 360]  # L diff vs identical ref


def test_preview_bad_inputs_never_crash_or_half_write(tmp_path):
    generate_react_dataset(tmp_path, episodes=1, frames=20, height=32, width=40)
    write_sample_calibration(tmp_path)
    d = tmp_path / "data" / "motherboard" / "2026-06-01"
    out = tmp_path / "prev"
    res = {p.name: write_preview(p, out / f"{p.stem}.mp4") for p in sorted(d.glob("*.h5"))}
    trunc, mismatch, missing, single = (res[f"episode_00{i}.h5"] for i in (1, 2, 3, 4))
    assert res["episode_000.h5"]["ok"] and res["episode_000.h5"]["projection"]
    assert not trunc["ok"] and trunc["output"] is None
    assert [f["rule"] for f in trunc["findings"]] == ["unreadable_file"]
    assert mismatch["ok"] and mismatch["frames"] == 20
    assert "short_stream" in [f["rule"] for f in mismatch["findings"]]
    assert missing["ok"] and "missing_modality" in [f["rule"] for f in missing["findings"]]
    assert single["ok"]
    assert sorted(p.name for p in out.iterdir()) == [
        "episode_000.mp4", "episode_002.mp4", "episode_003.mp4", "episode_004.mp4"]
    assert len(_decode_rgb(out / "episode_002.mp4")) == 20


def test_preview_clamps_short_gelsight_like_the_viewer(tmp_path):
    h5 = write_episode(tmp_path / "episode_000.h5", T=10, gel_T=3)
    res = write_preview(h5, tmp_path / "o.mp4", projection=False)
    assert res["ok"] and res["frames"] == 10
    rules = [f["rule"] for f in res["findings"]]
    assert rules.count("short_stream") == 2
    # Empty GelSight stream -> grey tiles, still a preview.
    h5b = write_episode(tmp_path / "episode_001.h5", T=6, gel_T=0)
    res = write_preview(h5b, tmp_path / "b.mp4", projection=False)
    assert res["ok"] and "empty_stream" in [f["rule"] for f in res["findings"]]
    fr = _decode_rgb(tmp_path / "b.mp4")[3].astype(int)
    assert np.abs(fr[360, 120] - GREY).max() <= 6
