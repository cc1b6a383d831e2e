"""Open World Agents tasks: stage 1 per recording, saving a split set, stage 2.

Stage-1 tasks write an Arrow shard into the run's scratch directory, which exists only
for that run, so their results are not cached (a cached result would point at a shard
that is gone); the work itself goes to robocurate's process pool.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from robocurate.owa import bins, events
from tasks import pool
from tasks.cache import retry_on_io_errors

_IO = dict(retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=2),
           retry_jitter_factor=0.5, retry_condition_fn=retry_on_io_errors,
           cache_policy=NO_CACHE, persist_result=False)


@task(name="owa-events-file", task_run_name="events:{path}", **_IO)
def extract_episode(path: str, shard: str, keep_topics: list[str],
                    rates: dict[str, float]) -> dict:
    """One MCAP -> one Arrow shard; data problems come back as findings."""
    return pool.run(events.extract_episode, path, shard, tuple(keep_topics), dict(rates))


@task(name="owa-save-events", **_IO)
def save_events(shards: dict[str, list[str]], output_dir: str) -> None:
    events.save_dataset(shards, events.event_features(), output_dir)


@task(name="owa-bins", task_run_name="bins:{input_dir}", **_IO)
def build_bins(input_dir: str, output_dir: str, fps: float, filter_empty_actions: bool) -> dict:
    return bins.build_binned_dataset(input_dir, output_dir, fps=fps,
                                     filter_empty_actions=filter_empty_actions)
