"""React tactile-visual tasks: one per episode file.

Tasks that write files (contact index, previews, galleries, clips) keep their output path
in the cache key; the flow re-runs one whose cached output has gone missing.
"""

from __future__ import annotations

from prefect import task
from prefect.tasks import exponential_backoff

from robocurate.react import clips, compress, contact, detect, gallery, integrity, preview
from tasks.cache import ContentHash, retry_on_io_errors, settles_in_place

_IO = dict(retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=2),
           retry_jitter_factor=0.5, retry_condition_fn=retry_on_io_errors,
           persist_result=True, cache_result_in_memory=False)


@task(name="react-integrity", task_run_name="integrity:{path}",
      cache_policy=ContentHash(files="inputs", ignore=("path",)), **_IO)
def check_episode(path: str, inputs: list[str]) -> dict:
    return integrity.check_episode(path)


@task(name="react-compress", task_run_name="compress:{path}",
      cache_policy=ContentHash(files="inputs", in_place="path"), **_IO)
@settles_in_place
def compress_episode(path: str, inputs: list[str], level: int, workers: int) -> dict:
    return compress.compress_file(path, level=level, workers=workers)


# GPU-bound: the `gpu` tag lets a server-wide concurrency limit bound them
# (robocurate deploy setup --gpu-slots N).
@task(name="react-contact-index", task_run_name="contact-index:{path}", tags=["gpu"],
      cache_policy=ContentHash(files="inputs"), **_IO)
def contact_index_episode(path: str, inputs: list[str], out: str, device: str,
                          gelsight_lag: int, active_sensors: list[str] | None) -> dict:
    return contact.index_episode(path, out, device=device, gelsight_lag=gelsight_lag,
                                 active_sensors=active_sensors)


@task(name="react-detect", task_run_name="detect:{path}",
      cache_policy=ContentHash(files="inputs"), **_IO)
def detect_episode(path: str, inputs: list[str], pt: str,
                   active_sensors: list[str] | None) -> dict:
    return detect.detect_episode(path, pt, active_sensors=active_sensors)


@task(name="react-preview", task_run_name="preview:{path}",
      cache_policy=ContentHash(files="inputs"), **_IO)
def preview_episode(path: str, inputs: list[str], out: str, projection: bool,
                    frozen: dict | None) -> dict:
    return preview.write_preview(path, out, projection=projection, frozen=frozen)


@task(name="react-gallery", task_run_name="gallery:{path}",
      cache_policy=ContentHash(files="inputs"), **_IO)
def gallery_episode(path: str, inputs: list[str], out: str, projection: bool,
                    frozen: dict | None) -> dict:
    return gallery.write_gallery(path, out, projection=projection, frozen=frozen)


@task(name="react-clips", task_run_name="clips:{path}",
      cache_policy=ContentHash(files="inputs"), **_IO)
def clips_episode(path: str, inputs: list[str], events: list[dict], out_dir: str,
                  min_s: float, max_s: float, trim_offset: int, projection: bool) -> dict:
    results = clips.write_event_clips(path, events, out_dir, min_s=min_s, max_s=max_s,
                                      trim_offset=trim_offset, projection=projection)
    findings = [f for r in results for f in r.get("findings", [])]
    return {"path": path, "clips": results, "findings": findings,
            "status": "clipped"}
