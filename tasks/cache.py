"""Caching tasks by the content of the files they read.

Prefect's INPUTS policy hashes a path by its string, so a file rewritten at the same
path returns a stale result, and a copy elsewhere misses. This policy keys a task on
(file name, content digest) of every input file plus every other parameter and the
code version, and leaves absolute paths out: changed bytes invalidate, a copy hits.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects

from robocurate.io.digest import code_version, default_memo


@dataclass
class ContentHash(CachePolicy):
    """``files``: the parameter holding the input file paths. ``ignore``: parameters
    that only say where things are (their content is already in the key)."""

    files: str = "inputs"
    ignore: tuple[str, ...] = ()

    def scope(self, task_ctx: TaskRunContext, inputs: dict[str, Any]) -> str:
        params = {k: v for k, v in inputs.items() if k != self.files and k not in self.ignore}
        fn = task_ctx.task.fn
        return hash_objects(
            f"{fn.__module__}.{fn.__qualname__}", code_version(), params, raise_on_failure=True)

    def file_keys(self, scope: str, paths) -> list[tuple[str, str]]:
        memo = default_memo()
        return [(Path(p).name, memo.origin(scope, memo.digest(p))) for p in paths]

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any], **kwargs: Any) -> Optional[str]:
        scope = self.scope(task_ctx, inputs)
        try:
            files = self.file_keys(scope, inputs.get(self.files) or [])
        except OSError:
            return None  # an unreadable input: run the task and let it report the problem
        return hash_objects(scope, files, raise_on_failure=True)


def settles_in_place(path_param: str):
    """For a task that rewrites one of its input files idempotently: after it runs,
    the file's new content maps back to the content it was cached under, so a re-run
    on the processed file is a cache hit (see DigestMemo.settle)."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            ctx = TaskRunContext.get()
            policy = getattr(ctx.task, "cache_policy", None) if ctx else None
            if not isinstance(policy, ContentHash):
                return fn(*args, **kwargs)
            bound = ctx.parameters
            path = Path(bound[path_param])
            memo = default_memo()
            scope = policy.scope(ctx, bound)
            try:
                before = memo.origin(scope, memo.digest(path))
            except OSError:
                return fn(*args, **kwargs)
            result = fn(*args, **kwargs)
            if os.path.exists(path):
                memo.settle(scope, memo.digest(path), before)
            return result

        return wrapper

    return decorate
