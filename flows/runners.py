"""Where a flow's per-file and per-episode tasks execute: threads, processes or Dask.

One setting, read when a flow module is imported (so it also applies to deployment runs
on a worker): ``ROBOCURATE_TASK_RUNNER`` = ``threads`` (default) | ``processes`` |
``dask``, with ``ROBOCURATE_DASK_ADDRESS`` naming an existing Dask scheduler
(``tcp://host:8786``); without an address, ``dask`` starts a local cluster of
``ROBOCURATE_DASK_WORKERS`` single-threaded workers (h5py holds one global lock per
process, so processes, not threads, give parallel HDF5 reads). The CLI's
``--task-runner`` / ``--dask-address`` set the same values for one run.

With threads, CPU-bound work goes to robocurate's own process pool (``tasks/pool.py``);
with processes or Dask each task already runs in its own worker process and does its
work inline.
"""

from __future__ import annotations

import os

from flows.naming import run_name
from flows.storage import shared_result_storage

KINDS = ("threads", "processes", "dask")


def _drop_prefect_exit_drains_in_child() -> None:
    """Prefect 3.8 resets its log and event workers in a forked child but leaves their
    ``threading`` at-exit drains registered; at the child's exit a drain fails an assert,
    so every process forked after a flow ran (a training ``DataLoader``'s fork workers)
    ends with exit code 1 and the loader raises "worker exited unexpectedly". The child
    has nothing of its parent's to drain: forget those callbacks there."""
    import threading

    from prefect._internal.concurrency.services import _QueueServiceBase

    atexits = getattr(threading, "_threading_atexits", None)
    if atexits:
        atexits[:] = [cb for cb in atexits if not isinstance(
            getattr(getattr(cb, "func", cb), "__self__", None), _QueueServiceBase)]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_prefect_exit_drains_in_child)


def make_task_runner(kind: str | None = None, *, threads: int = 16,
                     dask_address: str | None = None, workers: int | None = None):
    """A Prefect task runner for ``kind`` (default: the ROBOCURATE_TASK_RUNNER setting)."""
    kind = (kind or os.environ.get("ROBOCURATE_TASK_RUNNER") or "threads").lower()
    workers = workers or int(os.environ.get("ROBOCURATE_DASK_WORKERS", "0") or 0) or (
        os.cpu_count() or 1)
    if kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=threads)
    if kind == "processes":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=workers)
    if kind == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError as exc:  # an optional extra
            raise ValueError("--task-runner dask needs the dask extra: "
                             "pip install 'robocurate[dask]'") from exc
        address = dask_address or os.environ.get("ROBOCURATE_DASK_ADDRESS") or None
        if address:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None})
    raise ValueError(f"unknown task runner {kind!r}; choose from {', '.join(KINDS)}")


def runs_in_workers(runner) -> bool:
    """True when tasks already run in separate processes (no inner pool needed)."""
    return type(runner).__name__ in ("ProcessPoolTaskRunner", "DaskTaskRunner")


def pipeline_flow(name: str, *, named_by: tuple[str, ...] = (), threads: int = 16,
                  **kwargs):
    """``@flow`` as every robocurate pipeline declares it: runs named after their dataset
    (``named_by`` parameters), the configured task runner, the shared result storage."""
    from prefect import flow

    return flow(name=name, flow_run_name=run_name(name, *named_by) if named_by else None,
                task_runner=make_task_runner(threads=threads),
                result_storage=shared_result_storage(), **kwargs)
