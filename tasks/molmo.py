"""MolmoSpaces tasks: one per data file."""

from __future__ import annotations

from prefect import task
from prefect.tasks import exponential_backoff

from robocurate.molmo import pipeline
from robocurate.molmo.options import MolmoOptions
from tasks import pool
from tasks.cache import ContentHash, retry_on_io_errors, settles_in_place


@task(
    name="molmo-process-file",
    task_run_name="{stage_label}:{relpath}",
    cache_policy=ContentHash(files="inputs", ignore=("split_dir", "relpath"), in_place="h5_path"),
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_on_io_errors,
    persist_result=True,
    cache_result_in_memory=False,
)
@settles_in_place
def process_file(h5_path: str, split_dir: str, relpath: str, inputs: list[str],
                 opts: MolmoOptions, stages: list[str], stage_label: str) -> dict:
    """Repair/validate/stats for one file; data problems come back as findings."""
    return pool.run(pipeline.process_file, h5_path, split_dir, opts, tuple(stages))
