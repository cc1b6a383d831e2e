"""Caching tasks by the content of the files they read.

Prefect's INPUTS policy hashes a path by its string, so a file rewritten at the same
path returns a stale result, and a copy elsewhere misses. ``ContentHash`` keys a task on
(file name, content digest) of every input file plus every other parameter and the code
version, leaving absolute paths out: changed bytes invalidate, a copy hits.

Tasks that edit an input file in place (``in_place=``) need one more rule: their result
is the edited file, so only a file already in the state the task leaves it in may be
skipped. Such a task's key is the token under which its last run settled that state
(see DigestMemo.settle); a raw file, here or copied elsewhere, has no settled token and
runs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects

from robocurate.io.digest import code_version, default_memo


@dataclass
class ContentHash(CachePolicy):
    """``files``: the parameter listing input file paths; ``ignore``: parameters that
    only say where things are; ``in_place``: the parameter naming a file the task edits."""

    files: str = "inputs"
    ignore: tuple[str, ...] = ()
    in_place: str | None = None

    def scope(self, task_ctx: TaskRunContext, inputs: dict[str, Any]) -> str:
        skip = {self.files, self.in_place, *self.ignore}
        params = {k: v for k, v in inputs.items() if k not in skip}
        fn = task_ctx.task.fn
        # tasks/<domain>.py wraps robocurate/<domain>/: only that code (and the shared
        # modules) versions its cache entries.
        domain = fn.__module__.rsplit(".", 1)[-1]
        return hash_objects(f"{fn.__module__}.{fn.__qualname__}", code_version(domain), params,
                            raise_on_failure=True)

    def state(self, scope: str, inputs: dict[str, Any]) -> str:
        """Hash of every input file's name and content (raises OSError if one is unreadable)."""
        memo = default_memo()
        files = [(Path(p).name, memo.digest(p)) for p in inputs.get(self.files) or []]
        return hash_objects(scope, files, raise_on_failure=True)

    def token(self, scope: str, state: str, task_ctx: TaskRunContext) -> str:
        return default_memo().settled(scope, state) or f"run:{task_ctx.task_run.id}"

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any], **kwargs: Any) -> Optional[str]:
        scope = self.scope(task_ctx, inputs)
        try:
            state = self.state(scope, inputs)
        except OSError:
            return None  # an unreadable input: run the task and let it report the problem
        if self.in_place is None:
            return state
        return hash_objects(scope, self.token(scope, state, task_ctx), raise_on_failure=True)


def settles_in_place(fn):
    """Wraps the body of a task whose policy has ``in_place``: after a run, the inputs'
    new state is recorded as settled under the token the result is cached with."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = TaskRunContext.get()
        policy = getattr(ctx.task, "cache_policy", None) if ctx else None
        if not isinstance(policy, ContentHash) or policy.in_place is None:
            return fn(*args, **kwargs)
        params = ctx.parameters
        scope = policy.scope(ctx, params)
        try:
            token = policy.token(scope, policy.state(scope, params), ctx)
        except OSError:
            return fn(*args, **kwargs)
        result = fn(*args, **kwargs)
        try:
            default_memo().settle(scope, policy.state(scope, params), token)
        except OSError:
            pass
        return result

    return wrapper


def retry_on_io_errors(task, task_run, state) -> bool:
    """Retry condition: only I/O and connection failures are worth another attempt; a
    ValueError from bad data fails the same way every time."""
    try:
        state.result()
    except (OSError, TimeoutError, ConnectionError):
        return True
    except Exception:
        return False
    return False
