"""DROID tasks: per episode, tracks (metadata mode) -> depth (full mode) -> finalize.

The tracks step stages its outputs under ``OUT_ROOT/.staging/<episode>.<random>/`` (a new
folder per attempt, so a retry never meets a half-filled one); finalize moves the staged
folder into place in one rename. Nothing is cached: outputs live in OUT_ROOT, and a
re-run replaces an episode's folder whole.
"""

from __future__ import annotations

import os
import queue
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from robocurate.droid import episode as droid_episode
from robocurate.droid.layout import Episode
from tasks import pool
from tasks.cache import retry_on_io_errors

_OPTS = dict(cache_policy=NO_CACHE, persist_result=False, retries=1, retry_delay_seconds=2,
             retry_condition_fn=retry_on_io_errors)


@task(name="droid-tracks", task_run_name="tracks:{rel}", **_OPTS)
def episode_tracks(ep: dict, rel: str, out_root: str,
                   opts: droid_episode.TrackOptions) -> dict:
    stage = droid_episode.staging_dir(out_root, Episode.from_dict(ep))
    return pool.run(droid_episode.build_episode, ep, str(stage), opts)


class GpuSlots:
    """One GPU per depth task: a task takes a free device index and gives it back."""

    def __init__(self, gpus: int):
        self._free: queue.Queue[int] = queue.Queue()
        for i in range(max(1, gpus)):
            self._free.put(i)

    def acquire(self) -> int:
        return self._free.get()

    def release(self, i: int) -> None:
        self._free.put(i)


# Slot pools by run id: tasks get the id (a plain string parameter), not the pool itself.
_SLOTS: dict[str, GpuSlots] = {}


def gpu_slots(run_key: str, gpus: int) -> str:
    _SLOTS[run_key] = GpuSlots(gpus)
    return run_key


def drop_gpu_slots(run_key: str) -> None:
    _SLOTS.pop(run_key, None)


def _device(slot: int) -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{slot % torch.cuda.device_count()}"
    except ImportError:
        pass
    return "cpu"


@task(name="droid-depth", task_run_name="depth:{rel}", cache_policy=NO_CACHE,
      persist_result=False)
def episode_depth(ep_path: str, rel: str, stage: str, serials: list[str], calibration: dict,
                  source: str, min_depth: float, slots_key: str) -> dict:
    from robocurate.droid.depth import episode_depth as run_depth

    slots = _SLOTS[slots_key]
    slot = slots.acquire()
    try:
        result = run_depth(Path(ep_path), Path(stage), serials=serials, calibration=calibration,
                           source=source, min_depth=min_depth, device=_device(slot))
    finally:
        slots.release(slot)
    # Paths inside the staging folder are recorded relative to the episode folder, which
    # is where they will be once the folder is moved into place.
    result = _relative_to(result, Path(stage))
    summary = {k: v for k, v in result.items() if k != "findings"}
    droid_episode.update_quality(stage, "depth", summary)
    return result


def _relative_to(obj, stage: Path):
    prefix = str(stage) + os.sep
    if isinstance(obj, dict):
        return {k: (v if k == "findings" else _relative_to(v, stage)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_relative_to(v, stage) for v in obj]
    if isinstance(obj, str) and obj.startswith(prefix):
        return obj[len(prefix):]
    return obj


@task(name="droid-finalize", task_run_name="finalize:{rel}", cache_policy=NO_CACHE,
      persist_result=False)
def finalize(stage: str, rel: str, out_root: str) -> str:
    return str(droid_episode.finalize(stage, Path(out_root) / rel))
