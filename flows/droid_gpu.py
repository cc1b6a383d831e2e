"""DROID's GPU step as its own flow: depth videos for one staged episode, run on the GPU
pool (the CUDA image; ``--depth-source zed`` needs the ZED image).

``droid-tracks`` in full mode runs depth in process when no GPU pool is configured, and
otherwise dispatches one run of this flow's deployment per episode (tasks/gpu.py), which
writes the depth videos into the episode's staging folder and its result to MANIFEST,
both on the shared data volume.
"""

from __future__ import annotations

import uuid

from flows.runners import pipeline_flow
from robocurate.io.atomic import atomic_write_json
from tasks import droid as droid_tasks


@pipeline_flow("droid-depth", named_by=("rel",), threads=2)
def droid_depth(episode_dir: str, rel: str, stage: str, serials: list[str],
                calibration: dict, manifest: str, source: str = "stereo",
                min_depth: float = 0.1, gpus: int = 1) -> dict:
    """FFV1 depth videos of SERIALS for the raw episode EPISODE_DIR into the staging
    folder STAGE; the result (paths relative to STAGE, findings) goes to MANIFEST."""
    slots_key = droid_tasks.gpu_slots(uuid.uuid4().hex, gpus)
    try:
        result = droid_tasks.episode_depth(episode_dir, rel, stage, serials, calibration,
                                           source, min_depth, slots_key)
    finally:
        droid_tasks.drop_gpu_slots(slots_key)
    atomic_write_json(manifest, result)
    return {"rel": rel, "manifest": manifest, "cameras": sorted(result.get("cameras", {}))}
