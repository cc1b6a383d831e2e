"""What running the MolmoSpaces stages as a Prefect flow costs over plain function calls.

The same work (repair + validate + stats on a few dozen small files with videos, then
the split's index and aggregate statistics) runs

(a) "plain": ``robocurate.molmo.pipeline.process_file`` in a loop in one process, then
    ``outputs.write_index`` / ``outputs.write_aggregate``;
(b) "flow": the Prefect flow ``molmo_postprocess(root, options, stages, workers=1)`` on
    the embedded API, in-process (``flows.runtime.prepare_environment()`` before
    importing prefect), timed around the flow call, which includes the one-time start of
    the temporary server (and the creation of its database: the home is fresh);
(c) "flow-warm": as (b), but a flow run on an empty directory starts the server first
    and only the second flow call is timed (server start excluded).

Every variant runs in its own subprocess, on a fresh copy of the same generated data,
with a fresh ROBOCURATE_HOME (empty digest memo, cache records and Prefect database).
Per-file overhead = (flow - plain) / files.

    .venv/bin/python benchmarks/prefect_overhead.py [--repeats 2] [--files-per-house 8]
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

NAME = "prefect_overhead"
CAMERA = "droid_shoulder_light_randomization"
DEFAULT_PARAMS = dict(houses=4, files_per_house=8, trajs_per_file=4, seed=0, steps=[40, 80],
                      video=True, with_invalid=False, with_unreadable=False)
VARIANTS = ("plain", "flow", "flow-warm")


def _options():
    from robocurate.molmo.options import MolmoOptions
    return MolmoOptions(check_visibility=[(CAMERA, "pickup_obj"), (CAMERA, "place_receptacle")])


# ------------------------------------------------------------------ children
def child(variant: str, root: Path, empty: Path) -> dict:
    t_import = time.perf_counter()
    if variant == "plain":
        from robocurate.molmo import outputs
        from robocurate.molmo.layout import data_files
        from robocurate.molmo.pipeline import STAGES, process_file

        opts = _options()
        import_s = time.perf_counter() - t_import
        t0 = time.perf_counter()
        files = data_files(root)
        manifests = [process_file(str(p), str(root), opts, STAGES) for p in files]
        outputs.write_index(root, outputs.build_index(manifests), opts.overwrite)
        outputs.write_aggregate(root, outputs.aggregate_stats(manifests))
        seconds = time.perf_counter() - t0
        return {"seconds": seconds, "import_s": import_s, "files": len(files),
                "changed": sum(bool(m["changed"]) for m in manifests),
                "trajectories": sum(m["n_traj"] for m in manifests),
                "valid": sum(len(m["valid"] or {}) for m in manifests)}

    from flows.runtime import prepare_environment

    mode = prepare_environment()
    assert mode == "embedded", mode
    from flows.molmo import molmo_postprocess
    from robocurate.molmo.pipeline import STAGES

    opts = _options()
    import_s = time.perf_counter() - t_import
    out = {"import_s": import_s}
    if variant == "flow-warm":
        t0 = time.perf_counter()
        molmo_postprocess(str(empty), opts, ["repair"], 1)
        out["warmup_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = molmo_postprocess(str(root), opts, list(STAGES), 1)
    out["seconds"] = time.perf_counter() - t0
    s = result["summary"]
    out.update(files=s["files"], changed=s["files changed"], trajectories=s["trajectories"],
               valid=s["valid trajectories"], cached=s["cached files"])
    return out


def run_child(variant: str, src: Path, work: Path, tag: str) -> dict:
    root, home, empty = work / f"data-{tag}", work / f"home-{tag}", work / f"empty-{tag}"
    _common.fresh_copy(src, root)
    empty.mkdir(parents=True, exist_ok=True)
    os.sync()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["ROBOCURATE_HOME"] = str(home)
    env.pop("XDG_CACHE_HOME", None)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", variant, "--root", str(root),
                           "--empty", str(empty)], env=env, capture_output=True, text=True,
                          cwd=_common.REPO)
    process_s = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"child {variant} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_s"] = process_s
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)
    return res


# ------------------------------------------------------------------ parent
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--empty", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, default=_common.BENCH_DATA / "molmo-overhead-src")
    ap.add_argument("--work", type=Path, default=_common.BENCH_DATA / "molmo-overhead-work")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--houses", type=int, default=DEFAULT_PARAMS["houses"])
    ap.add_argument("--files-per-house", type=int, default=DEFAULT_PARAMS["files_per_house"])
    ap.add_argument("--trajs-per-file", type=int, default=DEFAULT_PARAMS["trajs_per_file"])
    args = ap.parse_args()

    if args.child:
        res = child(args.child, args.root, args.empty)
        print(json.dumps(res), flush=True)
        return

    params = dict(DEFAULT_PARAMS, houses=args.houses, files_per_house=args.files_per_house,
                  trajs_per_file=args.trajs_per_file)
    src, gen_s = _common.ensure_dataset(args.data, params)
    print(f"dataset {src}: " + (f"generated in {gen_s:.1f} s" if gen_s else "reused"))

    work = args.work
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    runs = []
    try:
        for rep in range(1, args.repeats + 1):
            for variant in VARIANTS:
                r = run_child(variant, src, work, f"{variant}-{rep}")
                r.update(variant=variant, repeat=rep)
                runs.append(r)
                extra = f" warm-up (server start + empty flow) {r['warmup_s']:.2f} s" \
                    if "warmup_s" in r else ""
                print(f"  {variant:<9} #{rep}: {r['seconds']:.2f} s (import {r['import_s']:.2f} s,"
                      f" process {r['process_s']:.2f} s){extra}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    n_files = runs[0]["files"]
    best = {v: min(r["seconds"] for r in runs if r["variant"] == v) for v in VARIANTS}
    warmup = min(r["warmup_s"] for r in runs if r["variant"] == "flow-warm")
    per_file = {v: 1000 * (best[v] - best["plain"]) / n_files for v in VARIANTS[1:]}
    ratios = {v: best[v] / best["plain"] for v in VARIANTS[1:]}

    print()
    print(_common.table(
        [[r["variant"], r["repeat"], round(r["seconds"], 3), round(r["import_s"], 3),
          round(r.get("warmup_s", 0.0), 3) if "warmup_s" in r else "",
          round(1000 * r["seconds"] / n_files, 1), r["changed"], r.get("cached", "")]
         for r in runs],
        ["variant", "rep", "s", "import s", "warm-up s", "ms/file", "changed", "cached"]))
    print(f"{n_files} files, {runs[0]['trajectories']} trajectories")
    for v in VARIANTS[1:]:
        print(f"{v}: overhead {per_file[v]:.1f} ms/file, {v}/plain {ratios[v]:.3f}")
    print(f"server start + empty flow run (warm-up in flow-warm): {warmup:.2f} s")

    ratio = round(ratios["flow-warm"], 3)
    out = _common.write_result(NAME, {
        "parameters": {"dataset": params, "options": _options().model_dump(mode="json"),
                       "stages": ["repair", "validate", "stats"], "workers": 1,
                       "repeats": args.repeats},
        "data": {"files": n_files, "trajectories": runs[0]["trajectories"],
                 "h5_bytes": _common.tree_bytes(src),
                 "mp4_bytes": _common.tree_bytes(src, "*.mp4")},
        "generation_seconds": round(gen_s, 1) if gen_s else None,
        "runs": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
                 for r in runs],
        "best_seconds": {k: round(v, 3) for k, v in best.items()},
        "overhead_ms_per_file": {k: round(v, 1) for k, v in per_file.items()},
        "ratio_flow_over_plain": {k: round(v, 3) for k, v in ratios.items()},
        "server_start_plus_empty_flow_s": round(warmup, 3),
        "ratio": ratio, "target": "none given (reported)",
    })
    print(f"results: {out}")
    print(f"RATIO {NAME}: {ratio} (target none given) [flow/plain excluding server start; "
          f"{ratios['flow']:.3f} including it]")


if __name__ == "__main__":
    main()
