"""Gallery GIF per React episode: ours vs PIL's plain ``save_all`` of the same 60 panels.

Uses the real-size noisy episodes of ``react_preview.py`` (generated once, reused). For
each episode, times ``write_gallery`` end to end (60 frames over 2-98 %, panel + overlay,
one shared MEDIANCUT palette, <= 4 MB, atomic write). Then, once, the baseline: the same
60 RGB panels saved with ``Image.save(save_all=True)`` from RGB frames (PIL quantises
every frame on its own). Target: <= 2 s per episode.

    .venv/bin/python benchmarks/react_gallery.py [--frames 300] [--episodes 2]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
import react_preview  # noqa: E402

import cv2  # noqa: E402
from PIL import Image  # noqa: E402

from robocurate.findings import Findings  # noqa: E402
from robocurate.react.calibration import sample_calibration  # noqa: E402
from robocurate.react.gallery import gallery_indices, write_gallery  # noqa: E402
from robocurate.react.preview import (frozen_masks, open_episode, prepare,  # noqa: E402
                                      render_panels)

NAME = "react_gallery"
TARGET_S = 2.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--episodes", type=int, default=2)
    args = ap.parse_args()
    cal = sample_calibration()
    eps = [react_preview.ensure_episode(args.frames, f"episode_{i:03d}", seed=i)
           for i in range(args.episodes)]
    out_dir = _common.BENCH_DATA / "react-gallery"
    rows, per_ep = [], []
    for h5 in eps:
        res = write_gallery(h5, out_dir / f"{h5.stem}.gif", calibration=cal)
        assert res["ok"], res["findings"]
        tm = res["timing"]
        per_ep.append(res["seconds"])
        rows.append([h5.name, res["seconds"], tm["read_s"], tm["compose_s"], tm["encode_s"],
                     round(res["bytes"] / 1e6, 2), res["colors"], f"{res['size'][0]}x{res['size'][1]}"])

    # Baseline: the same 60 panels, PIL's plain save_all of RGB frames.
    findings = Findings()
    with open_episode(eps[0], findings) as src:
        renderer, _ = prepare(src, eps[0], findings, calibration=cal, projection=True,
                              ref_frames=None)
        marks = {s: (m, "FROZEN") for s, m in frozen_masks(src).items()}
        panels = [cv2.cvtColor(p, cv2.COLOR_BGR2RGB)
                  for _, p in render_panels(src, renderer, gallery_indices(src.T), marks=marks)]
    t = time.perf_counter()
    ims = [Image.fromarray(p) for p in panels]
    buf = io.BytesIO()
    ims[0].save(buf, format="GIF", save_all=True, append_images=ims[1:],
                duration=round(1000 / 15), loop=0)
    t_plain = time.perf_counter() - t

    print(f"{len(eps)} episode(s) of {args.frames} frames 480x640, nproc={os.cpu_count()}, "
          f"load={os.getloadavg()[0]:.2f} (shared machine: noisy)")
    print(_common.table(rows, ["episode", "total_s", "read_s", "compose_s", "encode_s",
                               "MB", "colours", "size"]))
    worst = max(per_ep)
    print(f"PIL plain save_all of the same 60 panels: {t_plain:.2f} s "
          f"({len(buf.getvalue()) / 1e6:.2f} MB)")
    print(f"RATIO {NAME}: plain/ours = {t_plain / worst:.2f}; worst episode {worst:.2f} s "
          f"(target <= {TARGET_S} s: {'yes' if worst <= TARGET_S else 'NO'})")
    _common.write_result(NAME, {"frames": args.frames, "episodes": len(eps),
                                "per_episode_s": per_ep, "worst_s": worst,
                                "target_s": TARGET_S, "plain_save_all_s": round(t_plain, 3),
                                "plain_bytes": len(buf.getvalue()), "rows": rows})


if __name__ == "__main__":
    main()
