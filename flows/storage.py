"""ROBOCURATE_STORAGE: where task results and cache records live, shared by every worker
(CPU and GPU hosts, Dask workers) so work done on one is a cache hit on all.

A path (an NFS or bind-mounted volume at the same path on every host; ``file://`` and
``local://`` URLs count as paths) or an fsspec URL (``s3://bucket/prefix``; needs the
matching fsspec driver, e.g. s3fs). Unset: Prefect's local default
(``PREFECT_RESULTS_LOCAL_STORAGE_PATH``).

Prefect accepts a flow's result storage as a path or as the name of a block saved on the
API (a block object must already be saved when the flow is declared, i.e. at import, when
no API may be up). So a URL is named as the block ``remote-file-system/robocurate-storage``
and that block is saved from the setting by ``robocurate deploy setup`` (for servers and
their workers) and before every CLI run (``save_storage_block``).
"""

from __future__ import annotations

import os
from pathlib import Path

STORAGE_BLOCK = "robocurate-storage"
BLOCK_SLUG = f"remote-file-system/{STORAGE_BLOCK}"


def _setting() -> tuple[str, str | None]:
    """(value, local path or None when it is a URL)."""
    value = os.environ.get("ROBOCURATE_STORAGE") or ""
    local = value.removeprefix("file://").removeprefix("local://")
    return value, (None if "://" in local else local)


def shared_result_storage() -> Path | str | None:
    """What flows pass as ``result_storage``: None, a local path, or the block's name."""
    value, local = _setting()
    if not value:
        return None
    if local is None:
        return BLOCK_SLUG
    path = Path(local) / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _remote_block(value: str):
    from prefect.filesystems import RemoteFileSystem

    try:
        return RemoteFileSystem(basepath=value.rstrip("/") + "/results")
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ValueError(f"ROBOCURATE_STORAGE={value!r} is neither a path nor an fsspec URL "
                         f"with a location (e.g. s3://bucket/prefix): {exc}") from None


def save_storage_block() -> str | None:
    """Save (or update) the block a URL setting names, on the API in use; a no-op for a
    path or no setting. Returns what it did."""
    value, local = _setting()
    if not value or local is not None:
        return None
    block = _remote_block(value)
    block.save(STORAGE_BLOCK, overwrite=True)
    return f"storage block {BLOCK_SLUG} -> {block.basepath}"
