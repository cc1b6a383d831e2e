"""Atomic file writes: readers see the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]


@contextmanager
def atomic_open(path: str | os.PathLike, *, sync_dir: bool = False):
    """A binary file handle whose content replaces ``path`` in one rename when the block
    ends (fsynced first; mode 0644, not mkstemp's 0600: data files are shared), or
    vanishes if the block raises. ``sync_dir`` also makes the rename itself durable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)


_BACKGROUND_RELEASE_BYTES = 16 << 20


def replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """``os.replace``, with a big replaced file's blocks freed on a thread.

    The blocks of the file a rename replaces are freed when its last reference goes,
    inside the rename: on ext4 ~0.2 s for a 150 MB ``.pt``, ~1 s per GB with the
    ``discard`` mount option. Holding a descriptor on the old file moves that cost to a
    thread that closes it.
    """
    old_fd = None
    try:
        if os.stat(dst).st_size >= _BACKGROUND_RELEASE_BYTES:
            old_fd = os.open(dst, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        pass
    try:
        os.replace(src, dst)
    finally:
        if old_fd is not None:
            threading.Thread(target=os.close, args=(old_fd,), name="release-replaced",
                             daemon=True).start()


def fsync_dir(directory: str | os.PathLike) -> None:
    """Persist a rename in ``directory`` (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_json(path: str | os.PathLike, obj, *, indent: int = 2) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=indent) + "\n").encode("utf-8"))


@contextmanager
def locked_dir(directory: str | os.PathLike):
    """Serialise read-merge-write cycles of files in ``directory`` across processes.

    flock on the directory itself, so no lock file ends up in a published dataset.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # not POSIX: no cross-process lock
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
