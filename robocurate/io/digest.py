"""Content digests of files, streamed through xxh3-128 and memoised by file identity.

Caches keyed by content are only as cheap as their key: hashing a multi-GB HDF5 file
on every run would cost as much as the work it skips. The memo maps a file's identity
(device, inode, size, mtime_ns, ctime_ns) to its digest, so an unchanged file is read
once; any write to the file changes mtime/ctime and so forces a re-hash, and a copy at
another path is a new inode that hashes to the same digest (a cache hit by content).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import xxhash

CHUNK = 8 << 20


def default_cache_dir() -> Path:
    """robocurate's own state directory (digest memo, Prefect home for embedded runs)."""
    env = os.environ.get("ROBOCURATE_HOME")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "robocurate"


def hash_file(path: str | os.PathLike) -> str:
    """Digest of the file's bytes, streamed (never the whole file in memory)."""
    h = xxhash.xxh3_128()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class DigestMemo:
    """A small SQLite table of identity -> digest, safe across threads and processes."""

    def __init__(self, db_path: str | os.PathLike | None = None):
        self.db_path = Path(db_path) if db_path else default_cache_dir() / "digests.sqlite"
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS digest (dev INTEGER, ino INTEGER, size INTEGER,"
                " mtime_ns INTEGER, ctime_ns INTEGER, digest TEXT,"
                " PRIMARY KEY (dev, ino, size, mtime_ns, ctime_ns))"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS settled (scope TEXT, digest TEXT, origin TEXT,"
                " PRIMARY KEY (scope, digest))"
            )
            self._local.conn = conn
        return conn

    def digest(self, path: str | os.PathLike) -> str:
        st = os.stat(path)
        ident = _identity(st)
        try:
            row = self._conn().execute(
                "SELECT digest FROM digest WHERE dev=? AND ino=? AND size=? AND mtime_ns=?"
                " AND ctime_ns=?", ident).fetchone()
        except sqlite3.Error:
            row = None  # a broken memo only costs a re-hash
        if row:
            return row[0]
        value = hash_file(path)
        # The file may have changed while we read it; only memoise a stable identity.
        if _identity(os.stat(path)) == ident:
            try:
                self._conn().execute(
                    "INSERT OR REPLACE INTO digest VALUES (?,?,?,?,?,?)", (*ident, value))
            except sqlite3.Error:
                pass
        return value


    # A step that edits a file in place can only be skipped when the file is already in
    # the state the step leaves it in. ``settle`` records that a (step, input state) is
    # such a settled state, under the token its cached result was stored with; a raw
    # copy of the input elsewhere is not settled and so is processed again.
    def settle(self, scope: str, state: str, token: str) -> None:
        try:
            self._conn().execute("INSERT OR REPLACE INTO settled VALUES (?,?,?)",
                                 (scope, state, token))
        except sqlite3.Error:
            pass

    def settled(self, scope: str, state: str) -> str | None:
        try:
            row = self._conn().execute(
                "SELECT origin FROM settled WHERE scope=? AND digest=?", (scope, state)).fetchone()
        except sqlite3.Error:
            row = None
        return row[0] if row else None


_default_memo: DigestMemo | None = None
_default_lock = threading.Lock()


def default_memo() -> DigestMemo:
    """The process-wide memo under robocurate's cache dir (follows ROBOCURATE_HOME)."""
    global _default_memo
    with _default_lock:
        if _default_memo is None or _default_memo.db_path != default_cache_dir() / "digests.sqlite":
            _default_memo = DigestMemo()
        return _default_memo


def file_digest(path: str | os.PathLike) -> str:
    """Memoised content digest of a file."""
    return default_memo().digest(path)


def code_version(domain: str | None = None) -> str:
    """Digest of the robocurate source a task depends on: the shared modules (top level and
    ``io/``) plus the ``domain`` package (``molmo``, ``react``...), or the whole library
    when ``domain`` names no package. Editing the OWA code must not invalidate every
    MolmoSpaces cache entry; editing MolmoSpaces or shared code must."""
    import robocurate

    root = Path(robocurate.__file__).parent
    if not (domain and (root / domain).is_dir()):
        domain = None
    if domain not in _code_versions:
        files = sorted(root.rglob("*.py")) if domain is None else sorted(
            [*root.glob("*.py"), *(root / "io").rglob("*.py"), *(root / domain).rglob("*.py")])
        h = xxhash.xxh3_128()
        for p in files:
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
        _code_versions[domain] = f"{robocurate.__version__}+{h.hexdigest()[:16]}"
    return _code_versions[domain]


_code_versions: dict[str | None, str] = {}
