"""Throughput of the MolmoSpaces statistics stage against plain h5py reading.

Data: a >= 1 GB MolmoSpaces sample without videos (generated once, reused by its
parameters at /work/bench-data/molmo-1g). Untimed, once per dataset: the validate stage
marks the trajectories valid in place (``process_file(..., ("validate",))``, no video
checks; it only adds ``valid_traj_mask``). The stats stage then runs on scratch copies
(``--work``, deleted afterwards), so the reused dataset never holds ``stats/``.

Timed:

(a) baseline: one process reads with h5py (``ds[()]``) exactly the datasets the stats
    stage reads: every dataset under ``traj_i/<key>`` for each ``--keys`` key of every
    valid trajectory;
(b) the stats stage, ``process_file(path, split_dir, MolmoOptions(check_video=False),
    ("stats",))`` over all files in a spawn ``ProcessPoolExecutor(2)``; the temp copy,
    verification and rename that write ``stats/`` into each file are part of the work;
(c) the same with 1 worker.

Each stats variant runs on a fresh copy of the validated data twice (first with the page
cache dropped when that is possible, "cold", then "warm"), then "re-run" twice on the
processed data (nothing is rewritten then). MB/s counts the uncompressed bytes of the
datasets read (and, separately, the on-disk bytes of the HDF5 files).

    .venv/bin/python benchmarks/molmo_stats_throughput.py [--workers 2] [--no-cold]
"""

from __future__ import annotations

import argparse
import json
import os
import multiprocessing
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

NAME = "molmo_stats_throughput"
TARGET = 0.5
DEFAULT_PARAMS = dict(houses=4, files_per_house=4, trajs_per_file=45, seed=0,
                      steps=[1000, 1200], video=False, with_invalid=False,
                      with_unreadable=False)


def _warm_worker(_=None) -> int:
    import os

    import robocurate.molmo.pipeline  # noqa: F401  (imports h5py, numpy, ...)
    time.sleep(0.02)  # so that every worker gets a share and has imported
    return os.getpid()


def data_files(split: Path) -> list[Path]:
    from robocurate.molmo.layout import data_files as df
    return df(split)


def read_plan(files: list[Path], keys: list[str]) -> tuple[list[tuple[str, list[str]]], dict]:
    """[(file, [dataset paths])] the stats stage reads, and byte counts."""
    import h5py
    import numpy as np

    plan, raw, stored, n_traj, n_valid = [], 0, 0, 0, 0
    for path in files:
        names: list[str] = []
        with h5py.File(path, "r") as f:
            trajs = sorted((k for k in f if k.startswith("traj_")),
                           key=lambda k: int(k.split("_")[-1]))
            mask = np.asarray(f["valid_traj_mask"][()], dtype=bool)
            n_traj += len(trajs)
            for i in np.flatnonzero(mask[: len(trajs)]):
                n_valid += 1
                traj = f[trajs[i]]
                for key in keys:
                    obj = traj[key]
                    if isinstance(obj, h5py.Dataset):
                        found = [f"{trajs[i]}/{key}"]
                    else:
                        found = []
                        obj.visit(lambda n, obj=obj, base=f"{trajs[i]}/{key}": found.append(
                            f"{base}/{n}") if isinstance(obj[n], h5py.Dataset) else None)
                    for name in sorted(found):
                        ds = f[name]
                        raw += ds.size * ds.dtype.itemsize
                        stored += ds.id.get_storage_size()
                        names.append(name)
        plan.append((str(path), names))
    return plan, {"uncompressed_bytes": raw, "stored_bytes_of_read_datasets": stored,
                  "trajectories": n_traj, "valid_trajectories": n_valid,
                  "datasets": sum(len(n) for _, n in plan)}


def baseline(plan) -> float:
    import h5py

    t0 = time.perf_counter()
    total = 0
    for path, names in plan:
        with h5py.File(path, "r") as f:
            for name in names:
                total += f[name][()].nbytes
    dt = time.perf_counter() - t0
    assert total > 0
    return dt


def run_stage(pool, files, split, opts, stages):
    from robocurate.molmo.pipeline import process_file

    t0 = time.perf_counter()
    if pool is None:
        manifests = [process_file(str(p), str(split), opts, stages) for p in files]
    else:
        manifests = list(pool.map(process_file, [str(p) for p in files],
                                  [str(split)] * len(files), [opts] * len(files),
                                  [stages] * len(files)))
    dt = time.perf_counter() - t0
    bad = [m for m in manifests if m["status"] != "ok" or m["findings"]]
    if bad:
        raise SystemExit(f"stage {stages} reported problems: {bad[0]}")
    return dt, manifests


def ensure_validated(src: Path, opts, pool) -> float | None:
    """Run the validate stage once on the dataset itself (it only adds
    ``valid_traj_mask``); a marker file remembers it was done."""
    marker = src / ".bench-validated.json"
    key = json.dumps(opts.model_dump(mode="json"), sort_keys=True)
    if marker.is_file() and marker.read_text() == key:
        return None
    dt, _ = run_stage(pool, data_files(src), src, opts, ("validate",))
    marker.write_text(key)
    return dt


def make_pool(workers: int):
    pool = ProcessPoolExecutor(max_workers=workers,
                               mp_context=multiprocessing.get_context("spawn"))
    t0 = time.perf_counter()
    pids = set(pool.map(_warm_worker, range(workers * 4)))
    return pool, time.perf_counter() - t0, len(pids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=_common.BENCH_DATA / "molmo-1g",
                    help="pristine generated dataset (reused when its parameters match)")
    ap.add_argument("--work", type=Path, default=_common.BENCH_DATA / "molmo-1g-work",
                    help="scratch dir for the processed copies (deleted after)")
    ap.add_argument("--workers", type=int, nargs="+", default=[2, 1],
                    help="stats-stage worker counts to measure (first is the ratio's)")
    ap.add_argument("--keys", nargs="+", default=["actions", "obs/agent/qpos"])
    ap.add_argument("--no-cold", action="store_true",
                    help="skip the dropped-page-cache runs (both runs warm)")
    ap.add_argument("--keep-work", action="store_true")
    ap.add_argument("--houses", type=int, default=DEFAULT_PARAMS["houses"])
    ap.add_argument("--files-per-house", type=int, default=DEFAULT_PARAMS["files_per_house"])
    ap.add_argument("--trajs-per-file", type=int, default=DEFAULT_PARAMS["trajs_per_file"])
    ap.add_argument("--steps", type=int, nargs=2, default=DEFAULT_PARAMS["steps"])
    args = ap.parse_args()

    from robocurate.molmo.options import MolmoOptions

    params = dict(DEFAULT_PARAMS, houses=args.houses, files_per_house=args.files_per_house,
                  trajs_per_file=args.trajs_per_file, steps=list(args.steps))
    src, gen_s = _common.ensure_dataset(args.data, params)
    print(f"dataset {src}: " + (f"generated in {gen_s:.1f} s" if gen_s else "reused"))
    opts = MolmoOptions(check_video=False, stat_keys=list(args.keys))

    can_drop = not args.no_cold and _common.drop_caches()
    print(f"drop_caches: {'works' if can_drop else 'not used'}")
    modes = ["cold", "warm"] if can_drop else ["warm", "warm"]

    pools = {}
    pools[2] = make_pool(2)
    # ---- untimed, once per dataset: mark trajectories valid in place
    validated_now = ensure_validated(src, opts, pools[2][0])
    print("validate stage (untimed): " +
          (f"{validated_now:.1f} s" if validated_now else "already done on this dataset"))
    files = data_files(src)
    plan, counts = read_plan(files, list(args.keys))
    h5_bytes = _common.tree_bytes(src)
    counts["h5_file_bytes"] = h5_bytes
    counts["files"] = len(files)
    mb_raw, mb_disk = counts["uncompressed_bytes"] / 1e6, h5_bytes / 1e6
    print(f"{len(files)} files, {mb_disk:.0f} MB on disk, {counts['valid_trajectories']} "
          f"valid trajectories, {counts['datasets']} datasets read = {mb_raw:.0f} MB "
          f"uncompressed ({counts['stored_bytes_of_read_datasets'] / 1e6:.0f} MB stored)")

    work = args.work
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    copy_s = []
    try:
        runs = []

        def record(variant, workers, mode, seconds, changed=None, steal=0.0):
            row = {"variant": variant, "workers": workers, "cache": mode,
                   "seconds": round(seconds, 3), "cpu_steal_s": round(steal, 2),
                   "MBps_uncompressed": round(mb_raw / seconds, 1),
                   "MBps_on_disk": round(mb_disk / seconds, 1)}
            if changed is not None:
                row["files_rewritten"] = changed
            runs.append(row)
            print(f"  {variant:<9} workers={workers} {mode:<4} {seconds:7.2f} s "
                  f"{row['MBps_uncompressed']:8.1f} MB/s raw {row['MBps_on_disk']:7.1f} MB/s disk"
                  + (f"  rewritten={changed}" if changed is not None else "")
                  + f"  steal={steal:.1f}s", flush=True)

        # ---- (a) baseline, read-only on the validated dataset
        for mode in modes:
            if mode == "cold":
                _common.drop_caches()
            st0 = _common.steal_seconds()
            dt = baseline(plan)
            record("baseline", 1, mode, dt, steal=_common.steal_seconds() - st0)

        # ---- (b), (c) stats stage
        for workers in args.workers:
            if workers > 1 and workers not in pools:
                pools[workers] = make_pool(workers)
            pool = pools[workers][0] if workers > 1 else None
            target = work / "run"
            for mode in modes:
                t0 = time.perf_counter()
                _common.fresh_copy(src, target)
                os.sync()
                copy_s.append(time.perf_counter() - t0)
                if mode == "cold":
                    _common.drop_caches()
                st0 = _common.steal_seconds()
                dt, ms = run_stage(pool, data_files(target), target, opts, ("stats",))
                record("stats", workers, mode, dt, sum(m["changed"] for m in ms),
                       _common.steal_seconds() - st0)
            for mode in modes:
                if mode == "cold":
                    _common.drop_caches()
                st0 = _common.steal_seconds()
                dt, ms = run_stage(pool, data_files(target), target, opts, ("stats",))
                record("re-run", workers, mode, dt, sum(m["changed"] for m in ms),
                       _common.steal_seconds() - st0)
    finally:
        for p, _, _ in pools.values():
            p.shutdown()
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)

    def best(variant, workers, mode):
        xs = [r for r in runs if r["variant"] == variant and r["workers"] == workers
              and r["cache"] == mode]
        return min(xs, key=lambda r: r["seconds"]) if xs else None

    w0 = args.workers[0]
    ratios = {}
    for mode in dict.fromkeys(modes):
        b, s = best("baseline", 1, mode), best("stats", w0, mode)
        ratios[mode] = round(s["MBps_uncompressed"] / b["MBps_uncompressed"], 3)
    ratio = ratios["warm"]

    print()
    print(_common.table(
        [[r["variant"], r["workers"], r["cache"], r["seconds"], r["MBps_uncompressed"],
          r["MBps_on_disk"], r.get("files_rewritten", "")] for r in runs],
        ["variant", "workers", "cache", "s", "MB/s raw", "MB/s disk", "rewritten"]))
    print(f"pool start-up (spawn, import): " +
          ", ".join(f"{w} workers {p[1]:.2f} s" for w, p in pools.items()))
    for mode, r in ratios.items():
        print(f"stats({w0} workers)/baseline throughput, {mode}: {r}")

    out = _common.write_result(NAME, {
        "parameters": {"dataset": params, "keys": list(args.keys),
                       "options": opts.model_dump(mode="json"), "workers": args.workers},
        "drop_caches_worked": can_drop,
        "data": counts,
        "validate_seconds_untimed": round(validated_now, 2) if validated_now else None,
        "copy_seconds_untimed": [round(c, 2) for c in copy_s],
        "generation_seconds": round(gen_s, 1) if gen_s else None,
        "pool_startup_seconds": {str(w): round(p[1], 3) for w, p in pools.items()},
        "runs": runs,
        "ratio_stats_over_baseline": ratios,
        "ratio": ratio, "target": f">= {TARGET}", "met": ratio >= TARGET,
    })
    print(f"results: {out}")
    print(f"RATIO {NAME}: {ratio} (target >= {TARGET})")


if __name__ == "__main__":
    main()
