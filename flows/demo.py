"""``robocurate demo``: sample data through every pipeline that has landed."""

from __future__ import annotations

import shutil
from pathlib import Path

from flows.molmo import molmo_postprocess
from robocurate.molmo.options import MolmoOptions
from robocurate.samples.molmo import generate_molmo_dataset

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
