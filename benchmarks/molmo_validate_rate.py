"""Trajectories per second of the MolmoSpaces validate stage, video checks included.

Data: the sample with episode videos (default cameras, planted invalid trajectories and
an unreadable file included), generated once and reused by its parameters under
/work/bench-data. Untimed: a copy gets the repair stage (video names linked). Timed: the
validate stage (``process_file(..., ("validate",))`` with ``frames_to_check=3``,
``check_video=True`` and visibility of pickup_obj and place_receptacle in
droid_shoulder_light_randomization) over every file, on a fresh copy of the repaired
data each time, with 1 worker (in-process) and with N workers (spawn
``ProcessPoolExecutor``). The validate stage writes ``valid_traj_mask`` through the
crash-safe temp copy, which is part of the timed work. Each configuration runs "cold"
(page cache dropped, when possible) and "warm"; a "re-run" on the validated copy
(nothing rewritten) is reported separately.

Rate = all trajectories in the data (valid or not) / seconds.

    .venv/bin/python benchmarks/molmo_validate_rate.py [--workers 1 2] [--no-cold]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from molmo_stats_throughput import data_files, make_pool  # noqa: E402

NAME = "molmo_validate_rate"
TARGET = 50.0
CAMERA = "droid_shoulder_light_randomization"
DEFAULT_PARAMS = dict(houses=4, files_per_house=3, trajs_per_file=10, seed=1, video=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=_common.BENCH_DATA / "molmo-validate-src")
    ap.add_argument("--work", type=Path, default=_common.BENCH_DATA / "molmo-validate-work")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--no-cold", action="store_true")
    ap.add_argument("--houses", type=int, default=DEFAULT_PARAMS["houses"])
    ap.add_argument("--files-per-house", type=int, default=DEFAULT_PARAMS["files_per_house"])
    ap.add_argument("--trajs-per-file", type=int, default=DEFAULT_PARAMS["trajs_per_file"])
    ap.add_argument("--seed", type=int, default=DEFAULT_PARAMS["seed"])
    args = ap.parse_args()

    from robocurate.molmo.options import MolmoOptions

    params = dict(DEFAULT_PARAMS, houses=args.houses, files_per_house=args.files_per_house,
                  trajs_per_file=args.trajs_per_file, seed=args.seed)
    src, gen_s = _common.ensure_dataset(args.data, params)
    print(f"dataset {src}: " + (f"generated in {gen_s:.1f} s" if gen_s else "reused"))
    opts = MolmoOptions(check_video=True, frames_to_check=3,
                        check_visibility=[(CAMERA, "pickup_obj"), (CAMERA, "place_receptacle")])

    can_drop = not args.no_cold and _common.drop_caches()
    modes = ["cold", "warm"] if can_drop else ["warm", "warm"]
    print(f"drop_caches: {'works' if can_drop else 'not used'}")

    work = args.work
    if work.exists():
        shutil.rmtree(work)
    repaired, target = work / "repaired", work / "run"
    pools: dict = {}
    runs: list[dict] = []
    try:
        # ---- untimed: repair once, on a copy
        _common.fresh_copy(src, repaired)
        pools[2] = make_pool(2)
        _, ms = run_stage_lenient(pools[2][0], repaired, opts, ("repair",))
        files = data_files(repaired)
        n_files = len(files)
        h5_bytes = _common.tree_bytes(repaired)
        mp4_bytes = _common.tree_bytes(repaired, "*.mp4")
        n_videos = sum(1 for _ in repaired.rglob("*.mp4"))
        print(f"{n_files} files ({h5_bytes / 1e6:.1f} MB HDF5), {n_videos} videos "
              f"({mp4_bytes / 1e6:.1f} MB)")

        n_traj = n_valid = None
        for workers in args.workers:
            if workers > 1 and workers not in pools:
                pools[workers] = make_pool(workers)
            pool = pools[workers][0] if workers > 1 else None
            for mode in modes:
                _common.fresh_copy(repaired, target)
                os.sync()
                if mode == "cold":
                    _common.drop_caches()
                st0 = _common.steal_seconds()
                dt, ms = run_stage_lenient(pool, target, opts, ("validate",))
                runs.append(_row("validate", workers, mode, dt, ms, st0))
                n_traj = sum(m["n_traj"] for m in ms)
                n_valid = sum(len(m["valid"] or {}) for m in ms)
            for mode in modes:
                if mode == "cold":
                    _common.drop_caches()
                st0 = _common.steal_seconds()
                dt, ms = run_stage_lenient(pool, target, opts, ("validate",))
                runs.append(_row("re-run", workers, mode, dt, ms, st0))
    finally:
        for p, _, _ in pools.values():
            p.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    manifest_total = _manifest_trajectories(src)
    for r in runs:
        r["traj_per_s"] = round(manifest_total / r["seconds"], 1)
        r["ms_per_traj"] = round(1000 * r["seconds"] / manifest_total, 2)
    print()
    print(_common.table(
        [[r["variant"], r["workers"], r["cache"], r["seconds"], r["traj_per_s"],
          r["ms_per_traj"], r["files_rewritten"], r["cpu_steal_s"]] for r in runs],
        ["variant", "workers", "cache", "s", "traj/s", "ms/traj", "rewritten", "steal s"]))
    print(f"trajectories: {manifest_total} in the data ({n_traj} in readable files, "
          f"{n_valid} valid), files: {n_files}")

    wmax = max(args.workers)
    best = min((r for r in runs if r["variant"] == "validate" and r["workers"] == wmax
                and r["cache"] == "warm"), key=lambda r: r["seconds"])
    rate = best["traj_per_s"]
    by_mode = {m: max(r["traj_per_s"] for r in runs if r["variant"] == "validate"
                      and r["workers"] == wmax and r["cache"] == m) for m in set(modes)}
    out = _common.write_result(NAME, {
        "parameters": {"dataset": params, "options": opts.model_dump(mode="json"),
                       "workers": args.workers},
        "drop_caches_worked": can_drop,
        "data": {"files": n_files, "trajectories": manifest_total,
                 "trajectories_in_readable_files": n_traj, "valid_trajectories": n_valid,
                 "videos": n_videos, "h5_bytes": h5_bytes, "mp4_bytes": mp4_bytes},
        "generation_seconds": round(gen_s, 1) if gen_s else None,
        "pool_startup_seconds": {str(w): round(p[1], 3) for w, p in pools.items()},
        "runs": runs,
        "rate_traj_per_s_by_cache": by_mode,
        "ratio": rate, "target": f">= {TARGET} trajectories/s", "met": rate >= TARGET,
    })
    print(f"results: {out}")
    print(f"RATIO {NAME}: {rate} (target >= {TARGET:g}) [trajectories/s, {wmax} workers, warm]")


def run_stage_lenient(pool, split, opts, stages):
    """Like run_stage, but findings (planted invalid data) are expected here."""
    from robocurate.molmo.pipeline import process_file

    files = data_files(split)
    t0 = time.perf_counter()
    if pool is None:
        ms = [process_file(str(p), str(split), opts, stages) for p in files]
    else:
        ms = list(pool.map(process_file, [str(p) for p in files], [str(split)] * len(files),
                           [opts] * len(files), [stages] * len(files)))
    return time.perf_counter() - t0, ms


def _row(variant, workers, mode, dt, ms, st0) -> dict:
    row = {"variant": variant, "workers": workers, "cache": mode, "seconds": round(dt, 3),
           "files_rewritten": sum(bool(m["changed"]) for m in ms),
           "unreadable_files": sum(m["status"] != "ok" for m in ms),
           "cpu_steal_s": round(_common.steal_seconds() - st0, 2)}
    print(f"  {variant:<8} workers={workers} {mode:<4} {dt:7.2f} s  rewritten="
          f"{row['files_rewritten']}", flush=True)
    return row


def _manifest_trajectories(src: Path) -> int:
    """All trajectories the generator wrote (its manifest's totals)."""
    import json

    return int(json.loads((src / "sample_manifest.json").read_text())["totals"]["trajectories"])


if __name__ == "__main__":
    main()
