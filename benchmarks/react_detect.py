"""Failure-detection throughput on 10-minute React episodes (target >= 20 episodes/min).

Builds once (reused by its parameters) under $ROBOCURATE_BENCH_DATA/react-detect/ one raw
episode of ``--minutes`` at 30 Hz (18,000 ticks for 10 min) with three OptiTrack bodies at
120 Hz (72,000 samples each) and its contact-index ``.pt``, then copies it ``--episodes``
times and times ``robocurate.react.detect.detect_episode`` (every detector plus the freeze
diagnosis) on each copy, one after the other in one process.

What the detector reads is what a real episode costs: the raw OT streams, the camera
timestamps, the per-frame scalars and poses of the ``.pt`` (memory-mapped), and <= 64
frames per stream per freeze event. The frame datasets are full size (``--height`` x
``--width`` default 480x640, GZIP-4+shuffle, one frame per chunk, as after the compress
stage) but only the frames around the freeze events are written: the others are never read
by the detector, and writing 5 x 18,000 full frames would take tens of GB. Likewise the
``.pt``'s ``view`` thumbnails are 16x16 instead of 128x128 (the ``.pt`` is memory-mapped, so
the thumbnails are not read either way). Faults per episode: an OT hole (ot_loss), a
recorder stall (pipeline_stall, both sides), an operator hold (real_still), a plain frozen
pose (ot_loss by default), a teleport and two LED spikes.

    .venv/bin/python benchmarks/react_detect.py [--minutes 10] [--episodes 4] [--cold]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from robocurate.react.detect import detect_episode  # noqa: E402
from robocurate.react.layout import cam_aligned_pose  # noqa: E402

NAME = "react_detect"
TARGET = 20.0  # episodes of 10 minutes per minute
FPS, OT_HZ = 30, 120.0
STREAMS = ("realsense/cam0/color", "realsense/cam1/color", "realsense/cam2/color",
           "gelsight/left/frames", "gelsight/right/frames")
# (kind, side(s), start as a fraction of the episode, length in frames)
EVENTS = (("gap", ("right",), 0.2, 30), ("stall", ("left", "right"), 0.4, 20),
          ("still", ("left",), 0.6, 30), ("hold", ("right",), 0.8, 25))
EXPECTED = {"ot_loss": 2, "pipeline_stall": 2, "real_still": 1}


def _gzip() -> dict:
    return dict(compression="gzip", compression_opts=4, shuffle=True)


def generate(out: Path, minutes: float, H: int, W: int) -> dict:
    """One raw episode + its .pt; returns a description of what was injected."""
    rng = np.random.default_rng(0)
    T = int(round(minutes * 60 * FPS))
    ts = 1.78e9 + np.arange(T) / FPS
    events = [(kind, sides, int(frac * T), n) for kind, sides, frac, n in EVENTS]

    # OptiTrack: smooth motion for each body, then the faults.
    t = np.arange(ts[0] - 0.05, ts[-1] + 0.05, 1 / OT_HZ)
    t = np.maximum.accumulate(t + rng.normal(0, 5e-4, len(t)))  # VRPN arrival jitter
    ot = {}
    for k, body in enumerate(("motherboard", "sensor_left", "sensor_right")):
        pos = np.stack([0.1 * np.sin(t / (7 + k) + j) for j in range(3)], 1) + [0, 0, 0.8]
        pos += rng.normal(0, 1e-4, pos.shape)
        yaw = 0.3 * np.sin(t / (11 + k))
        quat = np.stack([np.zeros_like(t), np.zeros_like(t), np.sin(yaw / 2), np.cos(yaw / 2)], 1)
        quat += rng.normal(0, 1e-4, quat.shape)
        quat /= np.linalg.norm(quat, axis=1, keepdims=True)
        ot[body] = [t.copy(), np.concatenate([pos, quat], 1)]
    for kind, sides, a, n in events:
        for side in sides:
            tb, pose = ot[f"sensor_{side}"]
            m = (tb >= ts[a] - 0.5 / FPS) & (tb < ts[a + n] - 0.5 / FPS)
            if kind == "gap":
                ot[f"sensor_{side}"] = [tb[~m], pose[~m]]
            else:  # stall, still, hold: the solver reports one value over and over
                idx = np.flatnonzero(m)
                pose[idx] = pose[idx[0]]
    tb, pose = ot["sensor_left"]  # a marker swap: far and rotated, 4 frames
    a = int(0.1 * T)
    m = (tb >= ts[a] - 0.5 / FPS) & (tb < ts[a + 4] - 0.5 / FPS)
    pose[m, 0] += 0.3
    pose[m, 3:] = [np.sin(1.0), 0, 0, np.cos(1.0)]

    h5_path, pt_path = out / "episode_000.h5", out / "episode_000.pt"
    tmp = h5_path.with_suffix(".partial")
    yy, xx = np.mgrid[0:H, 0:W]
    base = (96 + 60 * np.sin(xx / 40.0) + 40 * np.cos(yy / 30.0))[..., None] + [0, 10, 20]
    with h5py.File(tmp, "w") as f:
        meta = f.create_group("metadata")
        meta.attrs["fps"] = FPS
        f["timestamps"] = ts
        for name in STREAMS:
            f.create_dataset(name, shape=(T, H, W, 3), dtype=np.uint8, chunks=(1, H, W, 3),
                             **_gzip())
        for c in range(3):
            f.create_dataset(f"realsense/cam{c}/depth", shape=(T, H, W), dtype=np.uint16,
                             chunks=(1, H, W), **_gzip())
        for kind, sides, a, n in events:
            lo, hi = a - 2, a + n + 2
            for s_i, name in enumerate(STREAMS):
                noise = rng.integers(-1, 2, (hi - lo, H, W, 3), dtype=np.int8)
                drift = np.arange(hi - lo)[:, None, None, None] * (0 if kind == "still" else 5)
                fr = np.clip(base[None] + drift + noise + 7 * s_i, 0, 255).astype(np.uint8)
                if kind == "stall" and name.startswith("realsense"):
                    fr[2:2 + n] = fr[1]
                f[name][lo:hi] = fr
        for body, (tb, pose) in ot.items():
            f[f"optitrack/{body}/timestamps"] = tb
            f[f"optitrack/{body}/pose"] = pose
    tmp.replace(h5_path)

    intensity = {s: np.abs(rng.normal(3, 1, T)).astype(np.float32) for s in ("left", "right")}
    intensity["left"][int(0.3 * T)] = 60.0
    intensity["right"][int(0.7 * T)] = 45.0
    ep = {
        "view": torch.zeros((T, 3, 16, 16), dtype=torch.uint8),
        "timestamps": torch.from_numpy(ts),
        "_contact_meta": {"trim_offset": 0, "pre_trim_n_frames": T,
                          "active_sensors": ["left", "right"], "drift_left": 0.5,
                          "drift_right": 0.7, "drift_warning": False},
    }
    for side in ("left", "right"):
        tb, pose = ot[f"sensor_{side}"]
        ep[f"sensor_{side}_pose"] = torch.from_numpy(cam_aligned_pose(ts, tb, pose))
        ep[f"tactile_{side}_intensity"] = torch.from_numpy(intensity[side])
    torch.save(ep, pt_path)
    return {"T": T, "ot_samples": int(len(t)), "events": [list(e[:2]) + [e[2], e[3]]
                                                          for e in events]}


def ensure(root: Path, params: dict) -> tuple[Path, dict, float | None]:
    marker = root / _common.PARAMS_FILE
    key = json.dumps(params, sort_keys=True)
    if marker.is_file() and marker.read_text() == key and (root / "info.json").is_file():
        return root, json.loads((root / "info.json").read_text()), None
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    t = time.perf_counter()
    info = generate(root, params["minutes"], params["height"], params["width"])
    seconds = time.perf_counter() - t
    (root / "info.json").write_text(json.dumps(info))
    marker.write_text(key)
    return root, info, seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--episodes", type=int, default=4)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--cold", action="store_true", help="drop the page cache first (root)")
    args = ap.parse_args()

    params = {"minutes": args.minutes, "height": args.height, "width": args.width, "v": 2}
    src, info, gen_s = ensure(_common.BENCH_DATA / "react-detect" /
                              f"m{args.minutes:g}_{args.height}x{args.width}", params)
    if gen_s is not None:
        print(f"generated a {args.minutes:g}-minute episode ({info['T']} ticks) in {gen_s:.1f}s")
    work = src / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    pairs = []
    for i in range(args.episodes):
        h5, pt = work / f"episode_{i:03d}.h5", work / f"episode_{i:03d}.pt"
        shutil.copyfile(src / "episode_000.h5", h5)
        shutil.copyfile(src / "episode_000.pt", pt)
        pairs.append((h5, pt))
    cold = _common.drop_caches() if args.cold else False

    rows, times = [], []
    for h5, pt in pairs:
        t = time.perf_counter()
        res = detect_episode(h5, pt)
        dt = time.perf_counter() - t
        times.append(dt)
        verdicts = {}
        for ev in res["freeze_events"]:
            verdicts[ev["verdict"]] = verdicts.get(ev["verdict"], 0) + 1
        ok = (res["status"] == "detected" and verdicts == EXPECTED
              and res["intervals"]["pose_teleports_L"] and len(res["intervals"]["intensity_spikes"]) == 2)
        if not ok:
            sys.exit(f"unexpected detection result on {h5.name}: status={res['status']} "
                     f"verdicts={verdicts} findings={res['findings'][:3]}")
        rows.append([h5.name, res["n_frames"], len(res["freeze_events"]), res["total_bad_frames"],
                     round(dt, 3)])
    per_min = 60.0 / float(np.mean(times))  # episodes of --minutes each
    print(_common.table(rows, ["episode", "frames", "freeze events", "bad frames", "seconds"]))
    print(f"frames {args.height}x{args.width}; {info['ot_samples']} OT samples per body; "
          f"page cache {'dropped' if cold else 'warm'}")
    print(f"RATIO {NAME}: {per_min:.1f} {args.minutes:g}-minute episodes per minute "
          f"(target >= {TARGET:g} for 10-minute ones); "
          f"mean {np.mean(times):.3f}s, max {np.max(times):.3f}s per episode")
    _common.write_result(NAME, {
        "minutes": args.minutes, "frames_per_episode": info["T"],
        "ot_samples_per_body": info["ot_samples"], "frame_size": [args.height, args.width],
        "episodes": args.episodes, "freeze_events_per_episode": len(EVENTS) + 1,
        "cold_cache": cold, "seconds": [round(x, 4) for x in times],
        "mean_seconds": round(float(np.mean(times)), 4),
        "episodes_per_minute": round(per_min, 2), "target": TARGET,
        "meets_target": per_min >= TARGET if args.minutes >= 10 else None,
        "note": "only frames near freeze events are stored (the detector reads no others); "
                ".pt thumbnails 16x16 (memory-mapped, not read)",
    })
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
