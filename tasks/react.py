"""React tactile-visual tasks: one per episode file."""

from __future__ import annotations

from prefect import task
from prefect.tasks import exponential_backoff

from robocurate.react import compress, integrity
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
