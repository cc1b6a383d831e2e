"""``robocurate demo``: sample data through every pipeline, then a publish to a local Hub."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from flows.demos import demos_check, demos_split, demos_stats
from flows.molmo import molmo_postprocess
from flows.droid import droid_tracks
from flows.owa import owa_bins, owa_events
from flows.react import react_curate
from robocurate.react.calibration import write_sample_calibration
from robocurate.molmo.options import MolmoOptions
from robocurate.samples.demos import generate_demos_dataset
from robocurate.samples.droid import generate_droid_episodes
from robocurate.samples.molmo import generate_molmo_dataset
from robocurate.samples.owa import generate_owa_recordings
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
    generate_react_dataset(react_root, episodes=2, frames=60, seed=0, detector_faults=True)
    write_sample_calibration(react_root)
    yield f"React sample data: {react_root}"
    curated = react_curate(root=str(react_root), task="motherboard", date="2026-06-01",
                           workers=workers, device="cpu")
    yield "React curation (all stages): " + ", ".join(
        f"{k}={v}" for k, v in curated["summary"].items())
    yield f"  report: {curated['report']}"

    droid_raw, droid_out = out / "droid-raw", out / "droid"
    for d in (droid_raw, droid_out):
        if d.exists():
            shutil.rmtree(d)
    generate_droid_episodes(droid_raw, episodes=3, seed=0, with_video=True, video_frames=8)
    yield f"DROID sample data: {droid_raw}"
    tracked = droid_tracks(raw_root=str(droid_raw), out_root=str(droid_out), mode="full",
                           episodes=-1, workers=workers, calib_dir=str(droid_raw / "calibration"))
    yield "DROID tracks + depth: " + ", ".join(
        f"{k}={v}" for k, v in tracked["summary"].items())
    yield f"  report: {tracked['report']}"

    owa_raw, owa_events_dir, owa_bins_dir = out / "owa-raw", out / "owa-events", out / "owa-bins"
    for d in (owa_raw, owa_events_dir, owa_bins_dir):
        if d.exists():
            shutil.rmtree(d)
    generate_owa_recordings(owa_raw, files=3, minutes=0.1, seed=0, generations=("0.3",))
    yield f"OWA sample recordings: {owa_raw}"
    ev = owa_events(train_dir=str(owa_raw), output_dir=str(owa_events_dir), workers=workers)
    yield "OWA event dataset: " + ", ".join(f"{k}={v}" for k, v in ev["summary"].items())
    bins = owa_bins(input_dir=str(owa_events_dir), output_dir=str(owa_bins_dir))
    yield "OWA binned dataset: " + ", ".join(f"{k}={v}" for k, v in bins["summary"].items())

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
