"""Preview MP4 of a React episode: source decode vs panel composition vs H.264 encode.

Generates (once, reused by its parameters) a raw episode at the real 480x640 size under
$ROBOCURATE_BENCH_DATA/react-preview: three RealSense + two GelSight streams with smooth
moving content plus sensor noise (sigma 2, so BLOSC-LZ4 has real work to do, unlike the
flat sample generator), one frame per chunk, Blosc LZ4 + SHUFFLE as the recorder writes,
and OptiTrack bodies moving like ``robocurate.samples.react``'s; calibration = the sample one.

Measures, on that file:
(a) decode: every frame of the five streams read in blocks of 16 (``EpisodeSource.read``);
(b) compose: ``PanelRenderer.render`` of every frame with the projection overlay;
(c) ``write_preview`` end to end (decode + compose + libx264 veryfast encode), frames/s.
Target: compose fps >= decode fps (composition is not the bottleneck).

    .venv/bin/python benchmarks/react_preview.py [--frames 300]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

import h5py  # noqa: E402
import hdf5plugin  # noqa: E402
import numpy as np  # noqa: E402

from robocurate.findings import Findings  # noqa: E402
from robocurate.react.calibration import sample_calibration  # noqa: E402
from robocurate.react.preview import (frozen_masks, open_episode, prepare,  # noqa: E402
                                      write_preview)
from robocurate.samples.react import REALSENSE_SERIALS  # noqa: E402

NAME = "react_preview"
H, W = 480, 640


def generate_episode(path: Path, frames: int, seed: int = 0) -> None:
    """Real-size raw episode written a block at a time (memory stays ~50 MB)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    tmp = path.with_suffix(".partial")
    blosc = hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE)
    ts = 1.7e9 + np.arange(frames) / 30.0
    with h5py.File(tmp, "w") as f:
        m = f.create_group("metadata")
        m.attrs["fps"] = 30
        m.attrs["realsense_serials"] = list(REALSENSE_SERIALS)
        f["timestamps"] = ts
        names = [f"realsense/cam{c}/color" for c in range(3)] + \
                [f"gelsight/{s}/frames" for s in ("left", "right")]
        for k, name in enumerate(names):
            ds = f.create_dataset(name, shape=(frames, H, W, 3), dtype=np.uint8,
                                  chunks=(1, H, W, 3), **blosc)
            for t0 in range(0, frames, 20):
                n = min(20, frames - t0)
                t = np.arange(t0, t0 + n, dtype=np.float32)[:, None, None, None]
                base = (110 + 50 * np.sin((xx[None, ..., None] + 4 * t) / (40 + 9 * k))
                        + 40 * np.cos((yy[None, ..., None] - 3 * t) / (35 + 5 * k))
                        + np.array([0, 25, 50], np.float32) * (k % 2))
                noise = rng.normal(0, 2.0, (n, H, W, 3)).astype(np.float32)
                ds[t0:t0 + n] = np.clip(base + noise, 0, 255).astype(np.uint8)
        ot_t = ts[0] - 0.05 + np.arange(int(frames / 30 * 120) + 20) / 120.0
        s = (ot_t - ot_t[0]) / (ot_t[-1] - ot_t[0])
        for body, sign in (("motherboard", 0.0), ("sensor_left", 1.0), ("sensor_right", -1.0)):
            x = sign * (0.15 - 0.12 * np.sin(np.pi * s))
            z = 0.72 if sign == 0 else 0.90 - 0.12 * np.sin(np.pi * s)
            yaw = sign * 0.3 * np.sin(np.pi * s)
            pose = np.stack([x, np.zeros_like(s), np.full_like(s, z) if np.isscalar(z) else z,
                             np.zeros_like(s), np.zeros_like(s), np.sin(yaw / 2),
                             np.cos(yaw / 2)], axis=1)
            f[f"optitrack/{body}/timestamps"] = ot_t
            f[f"optitrack/{body}/pose"] = pose
    os.replace(tmp, path)


def ensure_episode(frames: int, name: str = "episode_000", seed: int = 0) -> Path:
    d = _common.BENCH_DATA / "react-preview" / "data" / "bench" / "2026-06-01"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}_f{frames}.h5"
    if not path.exists():
        t = time.perf_counter()
        generate_episode(path, frames, seed)
        print(f"generated {path} ({path.stat().st_size / 1e6:.0f} MB) in "
              f"{time.perf_counter() - t:.1f}s")
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=300)
    args = ap.parse_args()
    h5 = ensure_episode(args.frames)
    cal = sample_calibration()

    findings = Findings()
    with open_episode(h5, findings) as src:
        T = src.T
        t = time.perf_counter()
        blocks = []
        for k in range(0, T, 16):
            blocks.append(src.read(range(k, min(T, k + 16))))
            if len(blocks) > 1:
                blocks.pop(0)  # keep memory flat; decode only is timed
        t_decode = time.perf_counter() - t
        renderer, _ = prepare(src, h5, findings, calibration=cal, projection=True,
                              ref_frames=None)
        fz = frozen_masks(src)
        cams, gels, poses = src.read(range(16))
        t = time.perf_counter()
        for i in range(T):
            j = i % 16
            renderer.render([c[j] for c in cams], {s: g[j] for s, g in gels.items()},
                            {b: p[j] for b, p in poses.items()},
                            marks={s: "FROZEN" for s in fz if fz[s][i]}, status=f"{i}",
                            scratch=True)  # as write_preview does
        t_compose = time.perf_counter() - t

    out = _common.BENCH_DATA / "react-preview" / "out.mp4"
    res = write_preview(h5, out, calibration=cal)
    assert res["ok"], res["findings"]
    decode_fps, compose_fps = T / t_decode, T / t_compose
    tm = res["timing"]
    rows = [["decode (5 streams, blocks of 16)", T, round(t_decode, 3), round(decode_fps, 1)],
            ["compose (panel + overlay)", T, round(t_compose, 3), round(compose_fps, 1)],
            ["write_preview: read", T, tm["read_s"], round(T / tm["read_s"], 1)],
            ["write_preview: compose", T, tm["compose_s"], round(T / tm["compose_s"], 1)],
            ["write_preview: encode (x264 veryfast)", T, tm["encode_s"],
             round(T / tm["encode_s"], 1)],
            ["write_preview: end to end", T, res["seconds"], res["fps"]]]
    print(f"{h5.name}: {T} frames 480x640 x5 streams, nproc={os.cpu_count()}, "
          f"load={os.getloadavg()[0]:.2f} (shared machine: noisy)")
    print(_common.table(rows, ["stage", "frames", "seconds", "frames/s"]))
    ratio = compose_fps / decode_fps
    print(f"RATIO {NAME}: compose/decode = {ratio:.2f} (target >= 1.0); "
          f"preview {res['fps']:.1f} frames/s end to end")
    _common.write_result(NAME, {"frames": T, "decode_s": round(t_decode, 4),
                                "compose_s": round(t_compose, 4),
                                "decode_fps": round(decode_fps, 2),
                                "compose_fps": round(compose_fps, 2),
                                "ratio_compose_over_decode": round(ratio, 3),
                                "preview": {k: res[k] for k in ("frames", "seconds", "fps",
                                                                 "timing")},
                                "mp4_bytes": out.stat().st_size})
    out.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
