"""Demonstration-file tasks: one per file, cached by the file's content."""

from __future__ import annotations

from prefect import task
from prefect.tasks import exponential_backoff

from robocurate.demos import check, split, statistics
from robocurate.io.digest import default_cache_dir, file_digest
from tasks import pool
from tasks.cache import ContentHash, retry_on_io_errors, settles_in_place

_IO = dict(retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=2),
           retry_jitter_factor=0.5, retry_condition_fn=retry_on_io_errors,
           persist_result=True, cache_result_in_memory=False)


@task(name="demos-check", task_run_name="check:{path}",
      cache_policy=ContentHash(files="inputs", ignore=("path",)), **_IO)
def check_file(path: str, inputs: list[str], schema: str) -> dict:
    return pool.run(check.check_file, path, schema)


def values_dir(path: str) -> str:
    """Where a file's low-dimensional values live, addressed by its content."""
    return str(default_cache_dir() / "demo-values" / file_digest(path))


@task(name="demos-stats", task_run_name="stats:{path}",
      cache_policy=ContentHash(files="inputs", ignore=("path",)), **_IO)
def file_stats(path: str, inputs: list[str], schema: str) -> dict:
    return pool.run(statistics.file_stats, path, values_dir(path), schema)


@task(name="demos-split", task_run_name="split:{path}",
      cache_policy=ContentHash(files="inputs", in_place="path"), **_IO)
@settles_in_place
def split_file(path: str, inputs: list[str], valid_fraction: float, seed: int) -> dict:
    try:
        result = split.split_train_valid(path, valid_fraction=valid_fraction, seed=seed)
    except (ValueError, OSError) as exc:  # a data problem: report it, retrying cannot help
        return {"path": path, "status": "failed", "findings": [{
            "path": path, "rule": "split_failed", "item": None, "severity": "error",
            "message": str(exc)}]}
    return {"path": path, "status": "ok", "findings": [], **result}


@task(name="demos-normalizer-fit", cache_policy=ContentHash(files="inputs", ignore=("out",)),
      **_IO)
def fit_normalizer(inputs: list[str], out: str, keys: list[str] | None, mode: str,
                   mask: str | None) -> dict:
    from robocurate.demos.normalize import DataNormalizer

    norm = DataNormalizer(mode=mode).fit(inputs, obs_keys=keys, mask=mask)
    norm.save(out)
    return {"out": out, "obs_keys": norm.obs_keys}
