"""``robocurate demo``: sample data through every pipeline that has landed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from flows.demos import demos_check, demos_split, demos_stats
from flows.molmo import molmo_postprocess
from flows.react import react_curate
from robocurate.molmo.options import MolmoOptions
from robocurate.samples.demos import generate_demos_dataset
from robocurate.samples.molmo import generate_molmo_dataset
from robocurate.samples.react import generate_react_dataset

VISIBILITY = [("droid_shoulder_light_randomization", "pickup_obj"),
              ("droid_shoulder_light_randomization", "place_receptacle")]


def run_demo(out: Path, workers: int = 2):
    """Yields lines describing what was produced."""
    out = Path(out).resolve()
    molmo_root = out / "molmo"
    if molmo_root.exists():
        shutil.rmtree(molmo_root)
    generate_molmo_dataset(molmo_root, splits=["train", "val"], seed=0)
    yield f"MolmoSpaces sample data: {molmo_root}"
    result = molmo_postprocess(root=str(molmo_root),
                               options=MolmoOptions(check_visibility=VISIBILITY),
                               workers=workers)
    yield "MolmoSpaces post-processing: " + ", ".join(
        f"{k}={v}" for k, v in result["summary"].items())
    for p in result["outputs"]:
        yield f"  output: {p}"
    yield f"  report: {result['report']}"

    demos_root = out / "demos"
    if demos_root.exists():
        shutil.rmtree(demos_root)
    generate_demos_dataset(demos_root, files=2, demos_per_file=8, seed=0, with_tactile=True)
    yield f"Demonstration sample data: {demos_root}"
    files = sorted(str(p) for p in demos_root.glob("*.hdf5"))
    checked = demos_check(files=files, workers=workers)
    yield "Demonstrations check: " + ", ".join(f"{k}={v}" for k, v in checked["summary"].items())
    yield f"  report: {checked['report']}"
    clean = [f for f in files if Path(f).name.startswith("demos_")]
    stats = demos_stats(files=clean, out=str(demos_root / "stats.json"), workers=workers)
    yield f"Demonstration statistics: {stats['out']}"
    demos_split(files=clean, valid_fraction=0.2, seed=0)
    yield f"Demonstrations split into mask/train and mask/valid: {len(clean)} files"

    react_root = out / "react"
    if react_root.exists():
        shutil.rmtree(react_root)
    generate_react_dataset(react_root, episodes=3, frames=30, seed=0)
    yield f"React sample data: {react_root}"
    curated = react_curate(root=str(react_root), task="motherboard", date="2026-06-01",
                           workers=workers)
    yield "React integrity + compression: " + ", ".join(
        f"{k}={v}" for k, v in curated["summary"].items())
    yield f"  report: {curated['report']}"

    # Publishing, against a local Hub-compatible server so the demo needs no account.
    from flows.publish import publish
    from robocurate.hub.card import write_card
    from robocurate.hub.localhub import LocalHub

    write_card(demos_root, title="robocurate demonstration sample", license="mit",
               task_categories=["robotics"], tags=["robocurate", "robomimic"],
               counters={"demos": stats["summary"]["demos"],
                         "steps": stats["summary"]["total steps"]})
    token = "hf_demo_local_token_not_secret_000"
    with LocalHub(out / "local-hub", token=token) as hub:
        hub_url = hub.url
        env = {"HF_ENDPOINT": hub_url, "HF_TOKEN": token}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            result = publish(folder=str(demos_root), repo_id="demo/robomimic-sample",
                             include=["README.md", "stats.json", "demos_*.hdf5"],
                             preflight="demos", approve=True)
        finally:
            for k, v in saved.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    r = result["receipt"]
    yield (f"Published to a local Hub ({hub_url}): {r['sent']['files']} files, "
           f"{r['sent']['bytes']:,} bytes, commit {r['commits'][0]['oid'][:12]}")
    yield f"  receipt: {result['receipt_path']}"
