"""The ZED routes (intrinsics and NEURAL depth from SVOs) against a stand-in for the SDK:
robocurate's own logic around it (unit conversion as the original, minimum depth, frame
loop, errors as findings, nothing half-written). The real SDK runs in the ZED image."""

import json

import numpy as np
import pytest

from robocurate.droid.calibration import camera_intrinsics
from robocurate.droid.depth import episode_depth
from robocurate.droid.ffv1 import metres_to_mm, read_depth_mm

import zed_sdk_double

SERIAL = "24400334"


@pytest.fixture
def sl(monkeypatch):
    return zed_sdk_double.install(monkeypatch)


def _depth(frames=3, h=36, w=64, seed=0):
    rng = np.random.default_rng(seed)
    d = rng.uniform(0.05, 4.0, (frames, h, w)).astype(np.float32)
    d[0, 0, :4] = [np.nan, np.inf, -np.inf, 70.0]  # invalid, and beyond 65.535 m
    return d


def test_zed_depth_is_the_originals_millimetres(sl, tmp_path):
    ep = tmp_path / "ep"
    depth = _depth()
    zed_sdk_double.write_svo(ep / "recordings" / "SVO" / f"{SERIAL}.svo", depth, fps=15.0)
    out = tmp_path / "out"
    m = episode_depth(ep, out, serials=[SERIAL], calibration={}, source="zed",
                      min_depth=0.1, device="cuda:1")
    assert m["findings"] == []
    [init] = sl.Camera.opened
    assert init.depth_mode == sl.DEPTH_MODE.NEURAL and init.sdk_gpu_id == 1
    assert init.depth_minimum_distance == pytest.approx(0.1)
    mkv = out / "recordings" / SERIAL / "depth.mkv"
    got = np.stack(list(read_depth_mm(mkv)))
    want = np.stack([metres_to_mm(f) for f in depth])
    want[want < 100] = 0  # closer than --min-depth: invalid
    np.testing.assert_array_equal(got, want)
    assert got[0, 0, 3] == 65535 and got[0, 0, 0] == 0
    meta = json.loads((mkv.parent / "depth_meta.json").read_text())
    assert meta["source"] == "zed" and meta["frame_count"] == 3 and meta["fps"] == 15.0
    assert meta["unit"] == "millimeters" and meta["width"] == 64 and meta["height"] == 36


def test_zed_depth_errors_are_findings_without_partial_files(sl, tmp_path):
    ep = tmp_path / "ep"
    zed_sdk_double.write_svo(ep / "recordings" / "SVO" / "111.svo", _depth(), corrupt_at=2)
    (ep / "recordings" / "SVO" / "222.svo").write_bytes(b"not an svo")
    zed_sdk_double.write_svo(ep / "recordings" / "SVO" / "333.svo2", np.zeros((0, 36, 64)))
    out = tmp_path / "out"
    m = episode_depth(ep, out, serials=["111", "222", "333", "444"], calibration={},
                      source="zed", min_depth=0.1, device="cpu")
    rules = {f["item"]: f["rule"] for f in m["findings"]}
    assert rules == {"111": "depth.svo_unreadable", "222": "depth.svo_unreadable",
                     "333": "depth.video_empty", "444": "depth.svo_missing"}
    assert m["cameras"] == {}
    assert not list(out.rglob("depth.mkv")) and not list(out.rglob("*.partial*"))


def test_zed_intrinsics_map_the_left_camera(sl, tmp_path):
    ep = tmp_path / "ep"
    zed_sdk_double.write_svo(ep / "recordings" / "SVO" / f"{SERIAL}.svo", _depth(), fx=531.5)
    rec = camera_intrinsics(SERIAL, source="zed", episode_dir=ep)
    assert rec["fx"] == 531.5 and rec["fy"] == 532.5 and rec["cx"] == 320.5
    assert (rec["width"], rec["height"]) == (64, 36)
    assert [rec[k] for k in ("k1", "k2", "p1", "p2", "k3")] == [0.01, -0.02, 0.001, 0.002, 0.003]
    assert rec["source"] == "zed" and rec["baseline_m"] == pytest.approx(0.12)
