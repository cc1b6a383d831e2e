"""DROID tasks: one cached ``droid-episode`` task per episode, running its chain as
nested tasks: ``droid-tracks`` -> ``droid-depth`` (full mode; in process, or a run of the
``droid-depth`` flow on the GPU pool) -> ``droid-finalize``.

The tracks step stages its outputs under ``OUT_ROOT/.staging/<episode>.<random>/`` (a new
folder per attempt, so a retry never meets a half-filled one); finalize moves the staged
folder into place in one rename and removes the folders earlier failed attempts of that
episode left for inspection.

The episode task is cached by the content of everything the episode reads (its
``input_files``) and every option, so a run retried from the UI, or a nightly run over a
growing RAW_ROOT, redoes only the episodes that failed or are new. The nested steps are
not cached on their own: a failed chain runs again whole (tracks cost ~0.1 s CPU).
"""

from __future__ import annotations

import os
import queue
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from robocurate.droid import episode as droid_episode
from robocurate.droid.layout import Episode
from tasks import gpu, pool
from tasks.cache import ContentHash, retry_on_io_errors

_NESTED = dict(cache_policy=NO_CACHE, persist_result=False)


@task(name="droid-tracks", task_run_name="tracks:{rel}", retries=1, retry_delay_seconds=2,
      retry_condition_fn=retry_on_io_errors, **_NESTED)
def episode_tracks(ep: dict, rel: str, out_root: str,
                   opts: droid_episode.TrackOptions) -> dict:
    stage = droid_episode.staging_dir(out_root, Episode.from_dict(ep))
    return pool.run(droid_episode.build_episode, ep, str(stage), opts)


class GpuSlots:
    """Which GPU a depth task uses: a task takes a free device index and gives it back.
    How many depth tasks run at once across hosts is Prefect's tag concurrency limit
    ``gpu`` (``robocurate deploy setup``); this picks the device within one process."""

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


@task(name="droid-depth", task_run_name="depth:{rel}", tags=["gpu"], **_NESTED)
def episode_depth(ep_path: str, rel: str, stage: str, serials: list[str], calibration: dict,
                  source: str, min_depth: float, slots_key: str) -> dict:
    """Depth videos into the staging folder; the manifest's paths are relative to it."""
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


def depth_manifest_path(stage: str) -> Path:
    """Where a GPU run of the ``droid-depth`` flow leaves its result: beside the staging
    folder (on the shared volume), not in it, so it is never published."""
    return Path(f"{stage}.depth.json")


def _relative_to(obj, stage: Path):
    prefix = str(stage) + os.sep
    if isinstance(obj, dict):
        return {k: (v if k == "findings" else _relative_to(v, stage)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_relative_to(v, stage) for v in obj]
    if isinstance(obj, str) and obj.startswith(prefix):
        return obj[len(prefix):]
    return obj


@task(name="droid-finalize", task_run_name="finalize:{rel}", **_NESTED)
def finalize(stage: str, rel: str, out_root: str) -> str:
    final = droid_episode.finalize(stage, Path(out_root) / rel)
    droid_episode.drop_stale_staging(out_root, rel)
    return str(final)


class DepthFailed(RuntimeError):
    """The depth step crashed (not a data finding); the staged outputs are kept."""


@task(name="droid-episode", task_run_name="episode:{rel}",
      cache_policy=ContentHash(files="inputs", ignore=("slots_key",)), persist_result=True,
      cache_result_in_memory=False)
def episode_chain(ep: dict, rel: str, inputs: list[str], out_root: str,
                  opts: droid_episode.TrackOptions, depth: dict | None,
                  slots_key: str) -> dict:
    """One episode to its folder under OUT_ROOT. ``depth`` (full mode) holds ``source``,
    ``min_depth`` and ``gpu_pool`` (None: in process). Returns the episode's manifest."""
    m = episode_tracks(ep, rel, out_root, opts)
    if m["status"] != "ok":
        return m
    stage = m["staging"]
    if depth is not None and m.get("calibration"):
        try:
            d = _depth_step(ep, rel, stage, m["calibration"], depth, slots_key)
        except Exception as exc:
            raise DepthFailed(f"depth of {rel} failed ({type(exc).__name__}: {exc}); staged "
                              f"outputs kept at {stage}") from exc
        m["findings"] = list(m.get("findings", [])) + list(d.get("findings", []))
        m["depth"] = {k: v for k, v in d.items() if k != "findings"}
    m["output"] = finalize(stage, rel, out_root)
    m.pop("staging", None)
    return m


def _depth_step(ep: dict, rel: str, stage: str, calib: dict, depth: dict,
                slots_key: str) -> dict:
    ep_path, serials = str(Episode.from_dict(ep).path), sorted(calib)
    if not depth.get("gpu_pool"):
        return episode_depth(ep_path, rel, stage, serials, calib, depth["source"],
                             depth["min_depth"], slots_key)
    manifest = depth_manifest_path(stage)
    try:
        return gpu.dispatch("droid-depth", depth["gpu_pool"], {
            "episode_dir": ep_path, "rel": rel, "stage": stage, "serials": serials,
            "calibration": calib, "source": depth["source"], "min_depth": depth["min_depth"],
            "manifest": str(manifest)}, _stereo_inputs(ep_path, serials), str(manifest))
    finally:
        manifest.unlink(missing_ok=True)


def _stereo_inputs(ep_path: str, serials: list[str]) -> list[str]:
    from robocurate.droid.depth import stereo_video_path

    return [str(p) for s in serials if (p := stereo_video_path(Path(ep_path), s)).is_file()]

