"""CPU-bound domain calls run in a shared process pool.

h5py serialises every HDF5 call behind one lock and JSON parsing holds the GIL, so
Prefect's thread runner alone would use one core. Tasks stay in the flow's threads
(cheap bookkeeping, logs and cache on the main process) and hand the work itself to
worker processes.
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_workers = 1
# With one worker the work runs in the calling thread; the flow's task threads would
# otherwise all enter h5py at once and contend for its global lock.
_inline = threading.Lock()


def configure(workers: int) -> None:
    """Set the number of worker processes (1 runs work in the calling thread)."""
    global _workers, _pool
    with _lock:
        if workers != _workers and _pool is not None:
            _pool.shutdown(wait=True)
            _pool = None
        _workers = max(1, int(workers))


def run(fn, *args, **kwargs):
    global _pool
    with _lock:
        if _workers <= 1:
            pool = None
        else:
            if _pool is None:
                # spawn: forking a process that runs Prefect's threads can deadlock.
                _pool = ProcessPoolExecutor(
                    max_workers=_workers, mp_context=multiprocessing.get_context("spawn"))
            pool = _pool
    if pool is None:
        with _inline:
            return fn(*args, **kwargs)
    return pool.submit(fn, *args, **kwargs).result()


def shutdown() -> None:
    global _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=True)
            _pool = None
