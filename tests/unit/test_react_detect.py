"""Interval detectors (reference 1.5.1) on hand-made arrays, the labelled sample, bad input,
and real OptiTrack streams with genuine freezes and jumps."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (BLOSC sample files)
import numpy as np
import pytest
import torch

from conftest import REPO, SHARED_DATA
from robocurate.react import detect
from robocurate.react.detect import (clean_segments, detect_episode, freeze_runs,
                                     intensity_spikes, merge_intervals, ot_loss,
                                     pad_and_merge, pose_teleports, translational_speed,
                                     union_count)
from robocurate.react.layout import SIDES, active_sensors_of, cam_aligned_pose, pt_path
from robocurate.samples.react import DETECT_CASES, generate_react_dataset

TASK, DATE = "motherboard", "2026-06-01"
NATNET = SHARED_DATA / "optitrack-natnet-stream"
MOTIVE = SHARED_DATA / "optitrack-motive-csv"


# =========================================================================== shared helpers
# (imported by test_react_freeze.py and test_react_quality.py)


def _l2_mean(frames: np.ndarray, ref: np.ndarray) -> np.ndarray:
    d = frames.astype(np.float32) - ref.astype(np.float32)
    return np.sqrt((d * d).sum(-1)).mean(axis=(-2, -1))


def index_episode(h5_path: Path, out: Path) -> dict:
    """A minimal stand-in for the contact-index stage (reference 1.2/1.3): trim, aligned
    poses, p01 reference and mean-L2 intensity on the raw (small) GelSight frames."""
    with h5py.File(h5_path, "r") as f:
        ts = f["timestamps"][:]
        active = active_sensors_of(f)
        firsts = [f[f"optitrack/sensor_{s}/timestamps"][0] for s in active]
        trim = int(np.searchsorted(ts, max(firsts))) if firsts else 0
        ep = {"timestamps": torch.from_numpy(ts[trim:].copy())}
        meta = {"trim_offset": trim, "pre_trim_n_frames": len(ts), "active_sensors": active}
        for side in SIDES:
            pose = cam_aligned_pose(ts, f[f"optitrack/sensor_{side}/timestamps"][:],
                                    f[f"optitrack/sensor_{side}/pose"][:])
            ep[f"sensor_{side}_pose"] = torch.from_numpy(pose[trim:].copy())
            gs = f[f"gelsight/{side}/frames"][:]
            first, kept = gs[0], gs[trim:]
            rough = _l2_mean(kept, first)
            w = min(30, len(rough))
            p01 = int(np.argmin(np.convolve(rough, np.ones(w) / w, mode="same")))
            meta[f"drift_{side}"] = float(_l2_mean(first[None], kept[p01])[0])
            ep[f"tactile_{side}_intensity"] = torch.from_numpy(
                _l2_mean(kept, kept[p01]).astype(np.float32))
        meta["drift_warning"] = max(meta["drift_left"], meta["drift_right"]) > 5.0
        ep["_contact_meta"] = meta
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ep, out)
    return ep


def make_sample(root: Path, **kw) -> tuple[dict, dict]:
    """Sample with detector faults, every readable episode indexed; -> (manifest, by case)."""
    manifest = generate_react_dataset(root, task=TASK, date=DATE, detector_faults=True, **kw)
    by_case = {}
    for e in manifest["files"]:
        h5 = root / e["path"]
        pt = pt_path(root, TASK, DATE, h5.name)
        if e["expected_detect"] is not None:
            index_episode(h5, pt)
        by_case.setdefault(e["case"], (h5, pt, e))
    return manifest, by_case


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("react-detect")
    manifest, by_case = make_sample(root, episodes=1, seed=5, height=48, width=64)
    results = {case: detect_episode(h5, pt) for case, (h5, pt, _) in by_case.items()}
    return root, manifest, by_case, results


# =========================================================================== interval helpers


def test_merge_pad_union_and_segments():
    assert merge_intervals([[5, 7], [0, 2], [3, 4], [9, 9]]) == [[0, 7], [9, 9]]
    assert merge_intervals([[0, 2], [4, 5]], max_gap=1) == [[0, 5]]  # a - prev_b <= 2
    assert merge_intervals([[0, 2], [5, 6]], max_gap=1) == [[0, 2], [5, 6]]
    assert pad_and_merge([(1, 1), (8, 8)], T=10, pad=3) == [[0, 9]]  # clipped, touching
    assert pad_and_merge([(2, 2), (12, 12)], T=20, pad=3) == [[0, 5], [9, 15]]
    assert union_count([[[0, 4]], [[3, 6]], [[10, 10]]], T=20) == 8
    assert union_count([[[15, 30]]], T=20) == 5  # clipped to T
    assert clean_segments([[[20, 29]]], T=60) == [[0, 19], [30, 59]]
    assert clean_segments([[[10, 29]], [[40, 45]]], T=70) == [[46, 69]]  # 0-9, 30-39 < 16


def test_intensity_spikes_absolute_and_p999():
    left = np.full(200, 5.0, np.float32)
    right = np.full(200, 5.0, np.float32)
    left[50] = 31.0
    right[120:122] = 80.0
    assert intensity_spikes(left, right) == [[47, 53], [117, 124]]
    left[50] = 30.0  # strictly greater than tau
    assert intensity_spikes(left, right) == [[117, 124]]
    # The seed's p999-relative rule: an episode-wide high level is not a spike...
    high = np.full(3000, 40.0)  # (p99.9 needs a long episode to mean anything)
    assert intensity_spikes(high, np.zeros(3000)) == [[0, 2999]]
    assert intensity_spikes(high, np.zeros(3000), rule="p999") == []
    # ...but a spike far above the side's own upper tail is.
    high[100] = 100.0
    assert intensity_spikes(high, np.zeros(3000), rule="p999") == [[97, 103]]
    with pytest.raises(ValueError):
        intensity_spikes(high, high, rule="p99")


def _still_pose(T: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    pose = np.zeros((T, 7))
    pose[:, :3] = 0.5 + np.cumsum(rng.normal(0, 1e-4, (T, 3)), axis=0)
    pose[:, 6] = 1.0
    return pose


def _rot_x(q: np.ndarray, angle: float) -> np.ndarray:
    """Rotate [x, y, z, w] quaternions of identity-ish poses about x (w, x components)."""
    out = q.copy()
    out[..., 0], out[..., 3] = np.sin(angle / 2), np.cos(angle / 2)
    return out


def test_pose_teleport_needs_translation_and_rotation():
    T = 100
    fast = _still_pose(T)
    fast[40:, 0] += 0.3  # 9 m/s in one frame, no rotation: a fast hand, not a teleport
    assert translational_speed(fast)[39] > 5
    assert pose_teleports(fast) == []
    spin = _still_pose(T)
    spin[40:, 3:] = _rot_x(spin[40:, 3:], 1.0)  # 30 rad/s, no translation
    assert pose_teleports(spin) == []
    swap = _still_pose(T)
    swap[40:45, 0] += 0.3
    swap[40:45, 3:] = _rot_x(swap[40:45, 3:], 1.0)
    assert pose_teleports(swap) == [[36, 48]]  # pairs (39,40) and (44,45), padded by 3
    # q and -q are the same rotation: no angular speed.
    flip = _still_pose(T)
    flip[40:, 0] += 0.3
    flip[40:, 3:] *= -1
    assert pose_teleports(flip) == []


def test_freeze_runs_count_the_anchor_frame():
    pose = _still_pose(60)
    pose[10:18] = pose[10]  # frames 10..17 identical: 8 frames incl. anchor
    pose[30:37] = pose[30]  # 7 frames: too short
    assert freeze_runs(pose) == [[10, 17]]
    pose[18] = pose[10] + 5e-8  # below EPS_POSE_BIT: still "the same"
    assert freeze_runs(pose) == [[10, 18]]
    pose[40:48] = pose[40]
    pose[48:56] = pose[48] + 1e-3  # two touching runs -> merged by ot_loss only
    assert freeze_runs(pose)[-2:] == [[40, 47], [48, 55]]
    assert ot_loss(pose)[-1] == [40, 55]
    assert freeze_runs(pose[:1]) == []


# =========================================================================== labelled sample


def _to_pt(frames_h5: list[int], trim: int) -> list[int]:
    return [frames_h5[0] - trim, frames_h5[1] - trim]


def _covers(intervals: list[list[int]], target: list[int]) -> bool:
    return any(a <= target[0] and target[1] <= b for a, b in intervals)


def test_sample_outcomes_match_the_manifest(sample):
    root, manifest, by_case, results = sample
    assert set(DETECT_CASES) <= set(by_case)
    for case, (h5, pt, entry) in by_case.items():
        exp, res = entry["expected_detect"], results[case]
        if exp is None:
            continue
        assert res["status"] == "detected", (case, res["findings"])
        assert res["key"] == f"{DATE}/{h5.stem}"
        trim = exp["trim_offset"]
        assert res["trim_offset"] == trim, case
        assert res["n_frames"] == entry["frames"] - trim
        for mode in detect.MODES:
            want = exp["intervals_h5"].get(mode, [])
            got = res["intervals"][mode]
            if not want:
                assert got == [], (case, mode, got)
            for target in want:
                assert _covers(got, _to_pt(target, trim)), (case, mode, got, target)
            # ...and not much more: padding adds 3 frames at most on each side.
            assert union_count([got], res["n_frames"]) <= sum(b - a + 1 + 6 for a, b in want)
        assert res["total_bad_frames"] == union_count(res["intervals"].values(), res["n_frames"])
        assert res["bad_fraction"] == round(res["total_bad_frames"] / res["n_frames"], 4)
        got_ev = sorted((e["side"], e["verdict"]) for e in res["freeze_events"])
        assert got_ev == sorted((e["side"], e["verdict"]) for e in exp["freeze_events"]), case
        drifted = [s for s in SIDES if res["drift"].get(f"drift_{s}", 0) > 5.0]
        assert drifted == exp["drift_warning"], (case, res["drift"])
        rules = {f["rule"] for f in res["findings"]}
        assert ("contact_drift" in rules) == bool(exp["drift_warning"])


def test_fast_translation_is_not_a_teleport(sample):
    _, _, by_case, results = sample
    h5, pt, entry = by_case["pose_teleport"]
    a, b = entry["expected_detect"]["fast_translation_only"]["h5_frames"]
    pose = torch.load(pt, weights_only=True)["sensor_right_pose"].numpy()
    assert translational_speed(pose)[a:b].max() > detect.TAU_VELOCITY_MPS
    assert results["pose_teleport"]["intervals"]["pose_teleports_R"] == []
    assert results["pose_teleport"]["intervals"]["pose_teleports_L"]


def test_late_ot_start_is_trimmed_and_not_a_freeze(sample):
    _, _, by_case, results = sample
    res = results["late_ot_start"]
    assert res["trim_offset"] >= 29 and res["pre_trim_n_frames"] == res["n_frames"] + res["trim_offset"]
    # Before the trim the aligned pose repeats the first OT sample: that must not count.
    assert res["intervals"]["ot_loss_L"] == [] and res["freeze_events"] == []


def test_single_sided_skips_the_inactive_side(sample):
    _, _, _, results = sample
    res = results["single_sided"]
    assert res["status"] == "detected" and res["skipped"] == ["right"]
    assert res["active_sensors"] == ["left"]
    info = [f for f in res["findings"] if f["rule"] == "sensor_inactive"]
    assert len(info) == 1 and info[0]["severity"] == "info" and info[0]["item"] == "right"
    assert "skipped" in info[0]["message"]
    # An explicit narrower list also skips a side that has data.
    h5 = Path(res["path"])
    narrowed = detect_episode(h5, Path(res["pt_path"]), active_sensors=["right"])
    assert narrowed["skipped"] == ["left", "right"] and narrowed["active_sensors"] == []


def test_result_is_json_and_clean_episode_is_clean(sample):
    _, _, _, results = sample
    res = results["clean"]
    assert json.loads(json.dumps(res)) == res
    assert res["total_bad_frames"] == 0 and res["clean_segments"] == [[0, res["n_frames"] - 1]]
    assert all(f["severity"] == "info" for f in res["findings"])


# =========================================================================== bad input


def _copy_pt(src: Path, dst: Path, **changes) -> Path:
    ep = torch.load(src, weights_only=True)
    for k, v in changes.items():
        if v is None:
            del ep[k]
        else:
            ep[k] = v
    torch.save(ep, dst)
    return dst


def _failed(res: dict, rule: str) -> dict:
    assert res["status"] == "failed", res
    hits = [f for f in res["findings"] if f["rule"] == rule]
    assert hits and hits[0]["severity"] == "error", res["findings"]
    return hits[0]


def test_bad_inputs_fail_with_a_clear_finding(sample, tmp_path):
    root, _, by_case, _ = sample
    h5, pt, _ = by_case["clean"]
    assert "missing" in _failed(detect_episode(h5, tmp_path / "nope.pt"), "missing_pt")["message"]
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    _failed(detect_episode(h5, junk), "unreadable_pt")
    ep = torch.load(pt, weights_only=True)
    pose = ep["sensor_left_pose"].clone()
    pose[5, 1] = float("nan")
    msg = _failed(detect_episode(h5, _copy_pt(pt, tmp_path / "nan.pt", sensor_left_pose=pose)),
                  "nan_pose")["message"]
    assert "row 5" in msg
    pose = ep["sensor_right_pose"].clone()
    pose[7, 3:] = 0.0
    _failed(detect_episode(h5, _copy_pt(pt, tmp_path / "q0.pt", sensor_right_pose=pose)),
            "zero_norm_quaternion")
    short = ep["tactile_left_intensity"][:-3].clone()
    msg = _failed(detect_episode(h5, _copy_pt(pt, tmp_path / "len.pt",
                                              tactile_left_intensity=short)),
                  "frame_count_mismatch")["message"]
    assert "tactile_left_intensity" in msg
    _failed(detect_episode(h5, _copy_pt(pt, tmp_path / "nokey.pt", sensor_left_pose=None)),
            "bad_pt_schema")
    inten = ep["tactile_right_intensity"].clone()
    inten[0] = float("inf")
    _failed(detect_episode(h5, _copy_pt(pt, tmp_path / "inf.pt", tactile_right_intensity=inten)),
            "nan_intensity")


def test_legacy_pt_format_still_loads(sample, tmp_path):
    _, _, by_case, results = sample
    h5, pt, _ = by_case["led_spikes"]
    legacy = tmp_path / "legacy.pt"
    torch.save(torch.load(pt, weights_only=True), legacy, _use_new_zipfile_serialization=False)
    res = detect_episode(h5, legacy)
    assert res["status"] == "detected"
    assert res["intervals"] == results["led_spikes"]["intervals"]


def test_blosc_frames_readable_without_importing_hdf5plugin_first(sample):
    """Detection may run before compression: the freeze diagnosis reads BLOSC frames."""
    import subprocess
    import sys

    _, _, by_case, _ = sample
    h5, pt, _ = by_case["recorder_stall"]
    code = ("import sys; from robocurate.react.detect import detect_episode; "
            "r = detect_episode(sys.argv[1], sys.argv[2]); "
            "print(r['status'], sorted(e['verdict'] for e in r['freeze_events']))")
    out = subprocess.run([sys.executable, "-c", code, str(h5), str(pt)], capture_output=True,
                         text=True, check=True, cwd=REPO).stdout
    assert out.strip() == "detected ['pipeline_stall', 'pipeline_stall']"


def test_bad_raw_files_fail_with_a_clear_finding(sample, tmp_path):
    root, manifest, by_case, _ = sample
    _, pt, _ = by_case["clean"]  # a .pt of the right length for the 60-frame episodes
    for case, rule, word in (("truncated", "unreadable_file", "HDF5"),
                             ("frame_count_mismatch", "frame_count_mismatch", "gelsight/right"),
                             ("missing_modality", "missing_modality", "gelsight/left")):
        h5 = by_case[case][0]
        assert word in _failed(detect_episode(h5, pt), rule)["message"], case
    # The raw OT stream with a NaN sample.
    src = by_case["clean"][0]
    bad = tmp_path / "episode_000.h5"
    bad.write_bytes(src.read_bytes())
    with h5py.File(bad, "r+") as f:
        f["optitrack/sensor_left/pose"][3, 0] = np.nan
    assert "optitrack/sensor_left" in _failed(detect_episode(bad, pt), "nan_pose")["message"]


# =========================================================================== real OptiTrack data


def _natnet(name: str) -> Path:
    path = NATNET / name
    if not path.is_file():
        pytest.skip(f"real OptiTrack data not available: {path}")
    return path


def read_pose_csv(path: Path) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """(timestamps or None, {body: (N, 7) [x, y, z, qx, qy, qz, qw]}) of a NatNet log.

    Handles a UTF-8 BOM, a header-only layout without timestamps (one body) and the
    ``<Body>-px,-py,-pz,-qx,-qy,-qz,-qz`` layout whose 7th column (misnamed) is qw.
    """
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f) if r]
    header = [h.strip() for h in rows[0]]
    data = [r[:len(header)] for r in rows[1:]]
    if header[0].lower() == "timestamp":
        ts = np.array([float(r[0]) for r in data])
        bodies = {}
        for j in range(1, len(header) - 6, 7):
            if not header[j]:
                continue
            name = header[j].split("-")[0]
            bodies[name] = np.array([[float(x) for x in r[j:j + 7]] for r in data])
        return ts, bodies
    return None, {"body": np.array([[float(x) for x in r[:7]] for r in data])}


def test_real_natnet_freeze_and_jump_hew0914():
    _, bodies = read_pose_csv(_natnet("hew0914_optitrack_data.csv"))
    pose = bodies["body"]
    assert pose.shape == (13127, 7)
    runs = freeze_runs(pose, fps=30)
    lengths = sorted((b - a + 1 for a, b in runs), reverse=True)
    # PROVENANCE: 1030 repeated rows, the longest freeze 611 repeats (+ its anchor frame).
    assert lengths[0] == 611 + 1
    same = np.all(np.diff(pose, axis=0) == 0, axis=1)
    assert int(same.sum()) == 1030
    assert sum(b - a for a, b in runs) <= 1030  # runs are made of repeated rows only
    # The 0.34 m jump: a real solver flip, it also rotates ~1.6 rad in that one sample.
    step = np.linalg.norm(np.diff(pose[:, :3], axis=0), axis=1)
    j = int(np.argmax(step))
    assert 0.34 < step[j] < 0.35 and np.median(step) < 1e-3
    tele = pose_teleports(pose, fps=30)
    assert tele == [[j - 3, j + 1 + 3]]
    # The other large steps (~8 cm) are far below 5 m/s at this rate: not teleports.
    assert all(_covers(tele, [k, k + 1]) == (k == j) for k in np.flatnonzero(step > 0.05))


def test_real_natnet_duplicates_and_untracked_body_beef1297():
    ts, bodies = read_pose_csv(_natnet("beef1297_ex1-3fedegs-1-test191111-005022.csv"))
    assert len(ts) == 601 and set(bodies) >= {"Neck", "L_Hand", "R_Elbow", "R_Hand"}
    fps = 1.0 / float(np.median(np.diff(ts)))
    assert 95 < fps < 125
    # Untracked body: one freeze over the whole file.
    assert ot_loss(bodies["R_Elbow"], fps=fps) == [[0, 600]]  # 600 repeats + the first row
    # 100 Hz logging of ~50 Hz tracking duplicates every other sample: pairs, not freezes.
    for body in ("L_Shoulder", "R_Hand"):
        same = np.all(np.diff(bodies[body], axis=0) == 0, axis=1)
        assert same.sum() > 250
        assert ot_loss(bodies[body], fps=fps) == []
    # Neck loses tracking for up to 47 samples: found, in the raw stream and at 30 Hz.
    neck = ot_loss(bodies["Neck"], fps=fps)
    assert max(b - a + 1 for a, b in neck) == 47 + 1  # 47 repeats (PROVENANCE) + anchor
    cam_ts = np.arange(ts[0], ts[-1], 1 / 30)
    aligned = {b: cam_aligned_pose(cam_ts, ts, p) for b, p in bodies.items()}
    assert ot_loss(aligned["R_Elbow"]) == [[0, len(cam_ts) - 1]]
    assert ot_loss(aligned["R_Hand"]) == []
    # 48 frozen samples at ~120 Hz last ~0.4 s: ~12 camera frames, above the 8-frame minimum.
    (a, b), = ot_loss(aligned["Neck"])
    assert abs((b - a + 1) - 48 / fps * 30) <= 1


def _motive(name: str) -> Path:
    path = MOTIVE / name
    if not path.is_file():
        pytest.skip(f"real OptiTrack data not available: {path}")
    return path


def read_motive_csv(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """{rigid body: (times, (N, 7) poses, longest run of blank rows)} of a Motive 1.23 CSV.

    Blank cells are frames where the body was not tracked: those rows are dropped, as a
    live stream simply has no sample then.
    """
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    start = next(i for i, r in enumerate(rows) if r and r[0] == "Frame")
    types, names, kinds, axes = rows[start - 4], rows[start - 3], rows[start - 1], rows[start]
    out = {}
    for body in dict.fromkeys(n for n, t in zip(names, types) if t == "Rigid Body"):
        col = {(k, a): j for j, (n, k, a) in enumerate(zip(names, kinds, axes)) if n == body}
        idx = [col[("Position", a)] for a in "XYZ"] + [col[("Rotation", a)] for a in "XYZW"]
        t, p, blank, longest = [], [], 0, 0
        for r in rows[start + 1:]:
            vals = [r[j] if j < len(r) else "" for j in idx]
            if "" in vals:
                blank += 1
                longest = max(longest, blank)
                continue
            blank = 0
            t.append(float(r[1]))
            p.append([float(v) for v in vals])
        out[body] = (np.array(t), np.array(p), longest)
    return out


def test_real_motive_jumps_are_time_gaps_not_teleports():
    from robocurate.react.freeze import near_speeds, opt_gap, ot_pair_speeds

    bodies = read_motive_csv(_motive("pathviewr_motive_example_data.csv"))
    assert set(bodies) == {"device02", "device03", "device05"}
    t, pose, _ = bodies["device02"]
    step = np.linalg.norm(np.diff(pose[:, :3], axis=0), axis=1)
    jumps = np.flatnonzero(step > 1.0)
    assert len(jumps) >= 2 and step.max() > 1.8
    gaps = np.diff(t)
    assert gaps.max() > 109
    mid, trans, ang = ot_pair_speeds(t, pose)
    for k in jumps:
        # Per row it looks like a 1.9 m teleport; with the real dt it is slow motion across
        # a hole in the stream, which is what opt_gap reports.
        assert gaps[k] > 10 and trans[k] < detect.TAU_VELOCITY_MPS
        w0, w1 = t[k] - 1.0, t[k + 1] + 1.0
        assert opt_gap(t, w0, w1) == pytest.approx(gaps[k])
        v, _ = near_speeds(mid, trans, ang, w0, w1)
        assert v == pytest.approx(trans[max(0, k - 120):k + 121].max()) or v >= trans[k]
    assert opt_gap(t, t[0], t[-1]) == pytest.approx(gaps.max())


def test_real_motive_occlusions_give_ot_gaps():
    from robocurate.react.freeze import opt_gap

    bodies = read_motive_csv(_motive("july-29_group-I_16-20_truncated.csv"))
    assert len(bodies) == 3
    for body, (t, pose, longest_blank) in bodies.items():
        assert 0 < longest_blank and len(t) < 4001
        # 100 Hz: the largest hole is (longest blank run + 1) sample periods.
        assert opt_gap(t, t[0], t[-1]) == pytest.approx((longest_blank + 1) * 0.01, abs=1e-6)
        assert freeze_runs(pose, fps=100) == []  # Motive exports never repeat a sample
