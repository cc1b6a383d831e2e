"""GZIP+shuffle conversion of a BLOSC-LZ4 REACT-like recording: h5repack vs robocurate.

Generates (once, reused by its parameters) a ~300 MB BLOSC-LZ4 file under
$ROBOCURATE_BENCH_DATA/react-compress (3 cameras + 2 gelsight, 240x320 RGB,
smooth moving content + sensor noise, plus poses), then times on fresh copies:

(a) ``h5repack -f SHUF -f GZIP=4 src dst`` (hdf5-tools, single threaded; reads
    BLOSC through HDF5_PLUGIN_PATH = hdf5plugin.PLUGINS_PATH);
(b) ``robocurate.react.compress.compress_file(copy, level=4, workers=2)``
    (includes the full read-back verification, fsync and atomic replace).

    .venv/bin/python benchmarks/react_compress.py [--frames 300]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

import h5py  # noqa: E402
import hdf5plugin  # noqa: E402
import numpy as np  # noqa: E402

from robocurate.react.compress import compress_file  # noqa: E402

NAME = "react_compress"
TARGET = 1.5
H, W = 240, 320
STREAMS = ["observations/images/cam_high", "observations/images/cam_left_wrist",
           "observations/images/cam_right_wrist", "tactile/gelsight_left", "tactile/gelsight_right"]


def generate(path: Path, frames: int) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    tmp = path.with_suffix(".partial")
    with h5py.File(tmp, "w") as f:
        f.attrs["episode"] = "bench"
        for k, name in enumerate(STREAMS):
            ds = f.create_dataset(name, shape=(frames, H, W, 3), dtype=np.uint8, chunks=(1, H, W, 3),
                                  **hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))
            ds.attrs["fps"] = 30
            for t0 in range(0, frames, 50):
                n = min(50, frames - t0)
                t = np.arange(t0, t0 + n, dtype=np.float32)[:, None, None, None]
                base = (96 + 60 * np.sin((xx[None, :, :, None] + 3 * t) / (25 + 7 * k))
                        + 50 * np.cos((yy[None, :, :, None] - 2 * t) / (31 + 5 * k))
                        + np.array([0, 20, 40], np.float32) * (k % 2))
                noise = rng.normal(0, 2.5, (n, H, W, 3)).astype(np.float32)
                ds[t0:t0 + n] = np.clip(base + noise, 0, 255).astype(np.uint8)
        f.create_dataset("observations/qpos", data=rng.standard_normal((frames, 14)))
        f.create_dataset("observations/ee_pose", data=np.cumsum(rng.standard_normal((frames, 7)) * 1e-3, 0))
        f.create_dataset("ot/tracks", shape=(0, 7), maxshape=(None, 7), chunks=(64, 7), dtype=np.float64)
        f.create_dataset("episode_len", data=np.int64(frames))
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    h5repack = shutil.which("h5repack")
    if h5repack is None:
        sys.exit("h5repack missing: apt-get update -qq && apt-get install -y -qq hdf5-tools")
    root = _common.BENCH_DATA / "react-compress"
    root.mkdir(parents=True, exist_ok=True)
    src = root / f"src_f{args.frames}.h5"
    if not src.exists():
        t = time.perf_counter()
        generate(src, args.frames)
        print(f"generated {src} ({src.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f}s")
    src_mb = src.stat().st_size / 1e6
    with h5py.File(src, "r") as f:
        raw_mb = sum(f[s].nbytes for s in STREAMS) / 1e6

    work = root / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()

    # (a) h5repack
    a_in, a_out = work / "a_in.h5", work / "a_out.h5"
    shutil.copyfile(src, a_in)
    env = dict(os.environ, HDF5_PLUGIN_PATH=hdf5plugin.PLUGINS_PATH)
    _ = a_in.read_bytes()  # same page-cache state as (b)
    t = time.perf_counter()
    subprocess.run([h5repack, "-f", "SHUF", "-f", "GZIP=4", str(a_in), str(a_out)], env=env, check=True)
    t_repack = time.perf_counter() - t
    repack_mb = a_out.stat().st_size / 1e6
    with h5py.File(a_out, "r") as fa, h5py.File(src, "r") as fs:
        d = fa[STREAMS[0]]
        ok = (d.compression == "gzip" and d.shuffle and np.array_equal(d[-1], fs[STREAMS[0]][-1]))
    if repack_mb < 0.05 * raw_mb or not ok:
        sys.exit(f"h5repack output suspicious: {repack_mb:.1f} MB, filters/values ok={ok}")

    # (b) ours
    b = work / "b.h5"
    shutil.copyfile(src, b)
    _ = b.read_bytes()
    res = compress_file(b, level=4, workers=args.workers)
    t_ours = res["seconds"]
    ours_mb = res["bytes_after"] / 1e6

    ratio = t_repack / t_ours
    print(f"source: {src_mb:.1f} MB BLOSC-LZ4 ({raw_mb:.1f} MB raw frames), nproc={os.cpu_count()}")
    print(f"h5repack : {t_repack:6.2f} s  {raw_mb / t_repack:6.1f} MB/s raw  -> {repack_mb:.1f} MB")
    print(f"ours(w={args.workers}): {t_ours:6.2f} s  {raw_mb / t_ours:6.1f} MB/s raw  -> {ours_mb:.1f} MB "
          f"(incl. verification, fsync, replace)")
    size_ok = res["bytes_after"] <= a_out.stat().st_size
    delta_kb = (res["bytes_after"] - a_out.stat().st_size) / 1e3
    print(f"RATIO {NAME}: {ratio:.2f} (target >= {TARGET}, size <= h5repack's: "
          f"{'yes' if size_ok else 'NO'}, ours - h5repack = {delta_kb:+.1f} kB)")

    out = {
        "name": NAME,
        "frames": args.frames,
        "workers": args.workers,
        "source_mb": round(src_mb, 2),
        "raw_frames_mb": round(raw_mb, 2),
        "h5repack_seconds": round(t_repack, 3),
        "h5repack_mb": round(repack_mb, 2),
        "ours_seconds": t_ours,
        "ours_mb": round(ours_mb, 2),
        "ratio": round(ratio, 3),
        "target": TARGET,
        "size_le_h5repack": size_ok,
        "size_delta_bytes": res["bytes_after"] - a_out.stat().st_size,
        "h5repack_version": subprocess.run([h5repack, "--version"], capture_output=True, text=True).stdout.strip(),
        **_common.machine_info(),
        **_common.code_info(),
    }
    _common.RESULTS.mkdir(parents=True, exist_ok=True)
    (_common.RESULTS / f"{NAME}.json").write_text(json.dumps(out, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
