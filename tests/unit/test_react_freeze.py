"""Freeze-event diagnosis (reference 1.5.2): evidence functions, verdict order, and a
hand-built raw file that checks frame coordinates and that only sampled frames are read."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from robocurate.react import freeze
from robocurate.react.freeze import (count_verdicts, diagnose_episode, freeze_events,
                                     motion_stat, near_speeds, opt_gap, ot_pair_speeds,
                                     sample_pairs, verdict_for)


def _evidence(**kw) -> dict:
    ev = {"cam0_dup": 0.0, "cam1_dup": 0.0, "cam2_dup": 0.0, "tac_dup": 0.0,
          "opt_gap_s": 0.01, "trans_vel_near_mps": 0.2, "ang_vel_near_rad_s": 0.3,
          "view_motion": 5.0, "cam0_motion": 5.0, "cam1_motion": 5.0, "tac_motion": 5.0}
    ev.update(kw)
    return ev


def test_verdict_order_and_thresholds():
    # Moving scene, no OT evidence: a bit-frozen pose defaults to ot_loss.
    assert verdict_for(_evidence()) == "ot_loss"
    # All three cameras duplicating is a stall, whatever the OT says (first match wins)...
    stall = dict(cam0_dup=0.3, cam1_dup=0.5, cam2_dup=1.0, opt_gap_s=2.0)
    assert verdict_for(_evidence(**stall)) == "pipeline_stall"
    # ...but two of three is not, and GelSight duplicates are deliberately ignored.
    assert verdict_for(_evidence(cam0_dup=1, cam1_dup=1, cam2_dup=0.29, tac_dup=1)) == "ot_loss"
    still = dict(view_motion=1.9, cam0_motion=1.9, cam1_motion=1.9, tac_motion=2.9)
    assert verdict_for(_evidence(**still)) == "real_still"
    # OT-loss signals beat a still scene, each one on its own, at the threshold.
    assert verdict_for(_evidence(**still, opt_gap_s=0.10)) == "ot_loss"
    assert verdict_for(_evidence(**still, trans_vel_near_mps=5.0)) == "ot_loss"
    assert verdict_for(_evidence(**still, ang_vel_near_rad_s=15.0)) == "ot_loss"
    # Any one modality above its noise floor: not still.
    for k, v in (("view_motion", 2.0), ("cam0_motion", 2.0), ("cam1_motion", 2.0),
                 ("tac_motion", 3.0)):
        assert verdict_for(_evidence(**dict(still, **{k: v}))) == "ot_loss", k
    counts = count_verdicts([{"verdict": "ot_loss"}, {"verdict": "real_still"},
                             {"verdict": "ot_loss"}])
    assert counts == {"ot_loss": 2, "pipeline_stall": 0, "real_still": 1, "ambiguous": 0}


def test_opt_gap_counts_window_edges():
    ts = np.array([0.0, 0.01, 0.02, 0.5, 0.51])
    assert opt_gap(ts, 0.0, 0.51) == pytest.approx(0.48)
    assert opt_gap(ts, -0.2, 0.02) == pytest.approx(0.2)  # window start -> first sample
    assert opt_gap(ts, 0.0, 0.02) == pytest.approx(0.01)
    assert opt_gap(ts, 0.1, 0.4) == pytest.approx(0.3)  # no sample: the whole window
    assert opt_gap(np.zeros(0), 1.0, 3.0) == pytest.approx(2.0)


def test_ot_speeds_use_real_dt_and_midpoints():
    ts = np.array([0.0, 0.01, 0.02, 0.02, 1.02])
    pose = np.zeros((5, 7))
    pose[:, 6] = 1.0
    pose[1, 0] = 0.1                   # 0.1 m in 10 ms: 10 m/s, then back
    pose[4, 0] = 0.5                   # 0.5 m over a 1 s hole: 0.5 m/s
    mid, trans, ang = ot_pair_speeds(ts, pose)
    assert mid.tolist() == pytest.approx([0.005, 0.015, 0.02, 0.52])
    assert trans.tolist() == pytest.approx([10.0, 10.0, 0.0, 0.5])  # dt 0 with no motion: 0
    assert np.all(ang == 0)
    assert near_speeds(mid, trans, ang, 0.018, 2.0) == (pytest.approx(0.5), 0.0)
    assert near_speeds(mid, trans, ang, 0.0, 0.006) == (pytest.approx(10.0), 0.0)
    assert near_speeds(mid, trans, ang, 3.0, 4.0) == (0.0, 0.0)
    # A half-turn about z in 10 ms: pi rad / 0.01 s.
    pose[2, 5], pose[2, 6] = 1.0, 0.0
    _, _, ang = ot_pair_speeds(ts, pose)
    assert ang[1] == pytest.approx(np.pi / 0.01)


def test_sample_pairs_and_freeze_event_merging():
    pairs = sample_pairs(100, 400)
    assert len(pairs) == freeze.N_DUP_SAMPLES and pairs[0] == 100 and pairs[-1] == 399
    short = sample_pairs(10, 17)
    assert short.min() == 10 and short.max() == 16  # pairs stay inside [a, b]
    pose = np.zeros((80, 7))
    pose[:, 0] = np.arange(80) * 1e-3
    pose[10:20] = pose[10]
    pose[21:31] = pose[21]      # 1-frame gap to the previous run: one event
    pose[50:60] = pose[50]
    assert freeze_events(pose) == [[10, 30], [50, 59]]


class _CountingFrames:
    """A frame stream that records which frames were read."""

    def __init__(self, frames):
        self.frames, self.read = frames, []

    def __getitem__(self, k):
        self.read.append(k)
        return self.frames[k]


def test_motion_stat_reads_only_sampled_frames():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (1000, 4, 4, 3), dtype=np.uint8)
    frames[500:700] = frames[500]  # duplicated run
    src = _CountingFrames(frames)
    motion, dup = motion_stat(src, sample_pairs(500, 699))
    assert dup == 1.0 and motion == 0.0
    assert len(set(src.read)) <= 2 * freeze.N_DUP_SAMPLES and len(src.read) == len(set(src.read))
    motion, dup = motion_stat(_CountingFrames(frames), sample_pairs(0, 400))
    assert dup == 0.0 and 70 < motion < 100  # uniform noise: E|x - y| = 85


def _raw_file(path, *, T=120, trim=10, stall=(40, 60), gap=None):
    """Tiny raw episode: noisy 8x8 frames, cameras duplicating over ``stall`` (raw frames),
    a left OT stream at 120 Hz starting at frame ``trim``, optionally with a hole."""
    rng = np.random.default_rng(2)
    ts = 1000.0 + np.arange(T) / 30.0
    with h5py.File(path, "w") as f:
        f["timestamps"] = ts
        for name in ("realsense/cam0/color", "realsense/cam1/color", "realsense/cam2/color",
                     "gelsight/left/frames"):
            fr = rng.integers(0, 255, (T, 8, 8, 3), dtype=np.uint8)
            if name.startswith("realsense") and stall:
                fr[stall[0]:stall[1]] = fr[stall[0] - 1]
            f.create_dataset(name, data=fr, chunks=(1, 8, 8, 3))
        t = np.arange(ts[trim], ts[-1] + 0.01, 1 / 120)
        if gap:
            t = t[(t < ts[gap[0]]) | (t > ts[gap[1]])]
        pose = np.zeros((len(t), 7))
        pose[:, 0] = 0.1 * (t - t[0])
        pose[:, 6] = 1.0
        f["optitrack/sensor_left/timestamps"] = t
        f["optitrack/sensor_left/pose"] = pose
    return ts, t, pose


def test_diagnose_maps_trimmed_frames_to_raw_frames(tmp_path):
    from robocurate.react.layout import cam_aligned_pose

    trim = 10
    ts, t, pose = _raw_file(tmp_path / "ep.h5", trim=trim, stall=(40, 60))
    aligned = cam_aligned_pose(ts, t, pose)[trim:]
    aligned[29:50] = aligned[29]  # pt frames 29..49 == raw frames 39..59: the stall
    with h5py.File(tmp_path / "ep.h5", "r") as f:
        events = diagnose_episode(f, {"left": aligned}, {"left": (t, pose)}, trim=trim,
                                  episode="2026-06-01/episode_000")
    assert len(events) == 1
    ev = events[0]
    assert list(ev) == list(freeze.EVENT_FIELDS)
    assert (ev["a"], ev["b"], ev["_h5_a"], ev["_h5_b"]) == (29, 49, 39, 59)
    assert ev["id"] == "2026-06-01/episode_000:left:29-49"
    assert ev["length_s"] == pytest.approx(21 / 30, abs=1e-3)
    # Raw frames 39..59 are the stalled ones: pairs inside all duplicate (the anchor pair
    # 39->40 too), the GelSight does not.
    assert ev["cam0_dup"] == ev["cam1_dup"] == ev["cam2_dup"] == 1.0 and ev["tac_dup"] == 0.0
    assert ev["verdict"] == "pipeline_stall"
    # The +-30 frame window is taken on the raw clock: it starts at raw frame 9, one tick
    # before OptiTrack starts (frame 10), and that edge gap counts.
    assert ev["opt_gap_s"] == pytest.approx(ts[10] - ts[9], abs=1e-3)
    assert ev["trans_vel_near_mps"] == pytest.approx(0.1, rel=0.05)


def test_diagnose_ot_hole_and_window_clipping(tmp_path):
    ts, t, pose = _raw_file(tmp_path / "ep.h5", trim=0, stall=None, gap=(2, 20))
    from robocurate.react.layout import cam_aligned_pose

    aligned = cam_aligned_pose(ts, t, pose)
    with h5py.File(tmp_path / "ep.h5", "r") as f:
        events = diagnose_episode(f, {"left": aligned}, {"left": (t, pose)}, trim=0,
                                  episode="d/episode_001")
    (ev,) = events
    assert ev["a"] <= 3 and ev["b"] >= 18   # the hole near the start; window clipped at 0
    assert ev["opt_gap_s"] == pytest.approx((ts[20] - ts[2]), abs=0.02)
    assert ev["cam0_dup"] == 0.0 and ev["verdict"] == "ot_loss"


def test_parallel_frame_reader_matches_h5py(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from robocurate.react.freeze import read_frames

    rng = np.random.default_rng(3)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        color = f.create_dataset("color", shape=(20, 6, 8, 3), dtype=np.uint8,
                                 chunks=(1, 6, 8, 3), compression="gzip", shuffle=True)
        color[:10] = rng.integers(0, 255, (10, 6, 8, 3), dtype=np.uint8)  # 10..19 unwritten
        depth = f.create_dataset("depth", data=rng.integers(0, 60000, (5, 6, 8), dtype=np.uint16),
                                 chunks=(1, 6, 8), compression="gzip", shuffle=True)
        lzf = f.create_dataset("lzf", data=rng.integers(0, 255, (5, 6, 8, 3), dtype=np.uint8),
                               chunks=(1, 6, 8, 3), compression="lzf")
        with ThreadPoolExecutor(2) as pool:
            for ds, idx in ((color, [0, 3, 9, 10, 15]), (depth, [0, 2, 4]), (lzf, [1, 4])):
                got = read_frames(ds, idx, pool)
                assert sorted(got) == idx
                for k in idx:
                    assert np.array_equal(got[k], ds[k]) and got[k].dtype == ds.dtype, (ds.name, k)
