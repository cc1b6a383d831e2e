"""DROID metadata mode: compute per 300-step episode on one core, and episodes/min with
2 worker processes.

Generates (once, reused by its parameters) ``--episodes`` clean raw episodes of
``--steps`` steps under $ROBOCURATE_BENCH_DATA/droid-metadata, then:

(a) one core: ``robocurate.droid.episode.process_episode`` episode after episode in this
    process (BLAS/OpenMP limited to one thread), 480 points per finger, 1 mm flow,
    3 cameras; reports CPU seconds (process time) and wall seconds per episode, which
    include reading trajectory.h5, every computation and writing all outputs with fsync;
(b) ``--workers`` processes (spawned, like the flow's pool) over the same episodes:
    episodes per minute of wall time.

Target: <= 1 s of compute per 300-step episode on one core (the seed's pipeline reports
about 30 s per episode). Timings on a shared machine are noisy.

    .venv/bin/python benchmarks/droid_metadata.py [--episodes 12] [--steps 300] [--workers 2]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from robocurate.droid.episode import TrackOptions, process_episode  # noqa: E402
from robocurate.droid.layout import discover_episodes, order_episodes  # noqa: E402
from robocurate.samples.droid import generate_droid_episodes  # noqa: E402

NAME = "droid_metadata"
TARGET_S = 1.0


def _one(ep_dict: dict, out: str, opts: TrackOptions) -> tuple[str, float]:
    t = time.process_time()
    m = process_episode(ep_dict, out, opts)
    return m["status"], time.process_time() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=12)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--points-per-finger", type=int, default=480)
    args = ap.parse_args()

    root = _common.BENCH_DATA / "droid-metadata"
    raw = root / "raw"
    params = {"episodes": args.episodes, "steps": args.steps, "seed": 0}
    marker = root / _common.PARAMS_FILE
    if not (marker.is_file() and marker.read_text() == json.dumps(params, sort_keys=True)):
        shutil.rmtree(root, ignore_errors=True)
        t = time.perf_counter()
        generate_droid_episodes(raw, episodes=args.episodes, seed=0, steps=args.steps,
                                faults=False)
        marker.write_text(json.dumps(params, sort_keys=True))
        print(f"generated {args.episodes} episodes of {args.steps} steps in "
              f"{time.perf_counter() - t:.1f}s")
    eps, _ = discover_episodes(raw)
    eps = [e.to_dict() for e in order_episodes(eps)]
    opts = TrackOptions(intrinsics_source="conf", calib_dir=str(raw / "calibration"),
                        points_per_finger=args.points_per_finger)

    # (a) one core, in this process
    out_a = root / "out-a"
    shutil.rmtree(out_a, ignore_errors=True)
    _one(eps[0], str(root / "warm"), opts)  # imports, OpenCV init, page cache
    cpu, wall = [], []
    for ep in eps:
        t = time.perf_counter()
        status, c = _one(ep, str(out_a), opts)
        wall.append(time.perf_counter() - t)
        cpu.append(c)
        if status != "ok":
            sys.exit(f"episode {ep['rel']} failed")
    cpu_med, wall_med = statistics.median(cpu), statistics.median(wall)
    out_bytes = sum(p.stat().st_size for p in out_a.rglob("*") if p.is_file()) / len(eps)

    # (b) worker processes
    out_b = root / "out-b"
    shutil.rmtree(out_b, ignore_errors=True)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=ctx) as pool:
        list(pool.map(_one, eps[: args.workers], [str(root / "warm-b")] * args.workers,
                      [opts] * args.workers))  # start-up outside the timing
        t = time.perf_counter()
        results = list(pool.map(_one, eps, [str(out_b)] * len(eps), [opts] * len(eps)))
        wall_b = time.perf_counter() - t
    assert all(s == "ok" for s, _ in results)
    per_min = len(eps) / wall_b * 60

    rows = [["one core, CPU s/episode (median)", cpu_med],
            ["one core, wall s/episode (median)", wall_med],
            ["one core, wall s/episode (max)", max(wall)],
            [f"{args.workers} workers, episodes/min", per_min],
            ["output MB/episode", out_bytes / 1e6]]
    print(f"{len(eps)} episodes x {args.steps} steps, {2 * args.points_per_finger} track points, "
          f"3 cameras, nproc={os.cpu_count()} (shared machine: timings are noisy)")
    print(_common.table(rows, ["measure", "value"]))
    print(f"RATIO {NAME}: {TARGET_S / cpu_med:.1f}x under the {TARGET_S:.0f} s/episode target "
          f"(CPU); seed pipeline ~30 s/episode")
    path = _common.write_result(NAME, {
        "episodes": len(eps), "steps": args.steps, "points_per_finger": args.points_per_finger,
        "workers": args.workers, "cpu_s_per_episode_median": round(cpu_med, 4),
        "wall_s_per_episode_median": round(wall_med, 4), "wall_s_per_episode_max": round(max(wall), 4),
        "episodes_per_min_workers": round(per_min, 1), "output_mb_per_episode": round(out_bytes / 1e6, 2),
        "target_s_per_episode": TARGET_S, "meets_target": cpu_med <= TARGET_S,
        "caveat": "shared 2-core machine with other jobs running; noisy"})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
