"""OWA screen-frame loading: robocurate's FrameLoader vs a plain PyAV decode loop.

Generates (once, reused by its parameters) an MKV screen recording under
$ROBOCURATE_BENCH_DATA/owa-images (moving gradient content, 30 fps, keyframe every
2 s; HEVC like the OWA recorder, or --codec) and its ScreenCaptured payloads (one per
frame, pts_ns = frame time), then times:
(a) plain loop: ``for frame in container.decode(video): frame.to_ndarray("rgb24")``;
(b) ``FrameLoader.load_rgb(payload, mcap)`` for every screen event in order (what the
    FSL dataset and the transforms call), every --stride-th frame when > 1.
Reported: frames/s of both and the ratio (b)/(a), target >= 0.8.

    .venv/bin/python benchmarks/owa_images.py [--frames 600] [--codec hevc]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

import av  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402

from robocurate.owa.media import FrameLoader  # noqa: E402

NAME = "owa_images"
TARGET = 0.8


def generate(path: Path, frames: int, width: int, height: int, codec: str) -> None:
    tmp = path.with_suffix(".partial.mkv")
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    with av.open(str(tmp), "w") as c:
        s = c.add_stream(codec, rate=30)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.time_base = Fraction(1, 1000)
        s.codec_context.gop_size = 60
        for k in range(frames):
            img = np.stack([(xx + 4 * k) % 256, (yy + 2 * k) % 256, (xx + yy + k) % 256], -1).astype(np.uint8)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = int(k * 1000 / 30)
            f.time_base = Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    tmp.rename(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--codec", default="hevc")
    ap.add_argument("--stride", type=int, default=1, help="load every n-th screen event")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    root = _common.BENCH_DATA / "owa-images"
    root.mkdir(parents=True, exist_ok=True)
    params = {k: getattr(args, k) for k in ("frames", "width", "height", "codec")}
    video, marker = root / "rec.mkv", root / _common.PARAMS_FILE
    if not (video.is_file() and marker.is_file() and marker.read_text() == json.dumps(params)):
        video.unlink(missing_ok=True)
        generate(video, args.frames, args.width, args.height, args.codec)
        marker.write_text(json.dumps(params))
    mcap = root / "rec.mcap"  # never opened: media_ref paths are relative to it

    with av.open(str(video)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        pts = [int(f.pts * s.time_base * 1_000_000_000) for f in c.decode(s)]
    payloads = [orjson.dumps({"utc_ns": p, "source_shape": [args.width, args.height],
                              "shape": [args.width, args.height],
                              "media_ref": {"uri": "rec.mkv", "pts_ns": p}}) for p in pts][::args.stride]

    def plain() -> int:
        with av.open(str(video)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            return sum(1 for f in c.decode(s) if f.to_ndarray(format="rgb24") is not None)

    def ours() -> int:
        loader = FrameLoader()
        for p in payloads:
            loader.load_rgb(p, mcap)
        n = loader.seeks
        loader.close()
        return n

    # alternate the two, best of --rounds each (the machine is shared and noisy)
    t_plain = t_ours = float("inf")
    for _ in range(args.rounds):
        t = time.perf_counter()
        n_plain = plain()
        t_plain = min(t_plain, time.perf_counter() - t)
        t = time.perf_counter()
        seeks = ours()
        t_ours = min(t_ours, time.perf_counter() - t)

    fps_plain, fps_ours = n_plain / t_plain, len(payloads) / t_ours
    ratio = fps_ours / fps_plain
    rows = [["PyAV plain loop (a)", n_plain, t_plain, fps_plain],
            ["FrameLoader sequential (b)", len(payloads), t_ours, fps_ours]]
    print(_common.table(rows, ["reader", "frames", "seconds", "frames/s"]))
    print(f"\nratio (b)/(a) = {ratio:.2f} (target {TARGET}: {'PASS' if ratio >= TARGET else 'FAIL'}); "
          f"seeks {seeks}; {args.width}x{args.height} {args.codec}; machine shared, timings noisy")
    out = _common.write_result(NAME, {"params": {**params, "stride": args.stride},
                                      "frames_per_s": {"plain": fps_plain, "loader": fps_ours},
                                      "seconds": {"plain": t_plain, "loader": t_ours},
                                      "seeks": seeks, "ratio": ratio, "target": TARGET,
                                      "pass": ratio >= TARGET})
    print(f"result: {out}")


if __name__ == "__main__":
    main()
