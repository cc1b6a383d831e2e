"""Crash-safe additions to existing HDF5 files.

HDF5 has no journal: a process killed while it holds a file open for writing
can leave the file unreadable (metadata half flushed), and files with
superblock v3 (created with ``libver`` >= "v110", e.g. ``"latest"``) are
additionally refused by every later open, even read-only, with "file is
already open for write" until ``h5clear`` is run. Editing a recording in
place therefore risks the source data. Instead we never open the original
for writing:

1. open the original read-only, so callers can check what is already there
   (re-runs that find nothing to do write nothing and copy nothing);
2. on the first :meth:`H5Addition.writable` call, copy the file to a hidden
   temporary file in the same directory and hand out the copy opened ``r+``;
3. on success, close the copy, verify that every pre-existing dataset is
   still there and bit-exact, fsync it, ``os.replace`` it over the original
   (atomic within a directory) and fsync the directory.

A SIGKILL at any point leaves either the untouched original or the complete
new file under the original name, plus at worst a stale temporary file that
the next run deletes (the copy is flock-ed by its owner, so a live run's
copy is never mistaken for a stale one: the second writer gets
:class:`H5BusyError` instead).
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import h5py
import numpy as np
import xxhash

from robocurate.io import atomic

try:
    import fcntl
except ImportError:  # not POSIX: no protection against concurrent writers
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "H5Addition",
    "H5BusyError",
    "H5WriteError",
    "H5VerificationError",
    "TEMP_SUFFIX",
    "dataset_fingerprints",
    "h5_additions",
    "temp_path_for",
    "verify_preserved",
]

TEMP_SUFFIX = ".robocurate-tmp"
VERIFY_MODES = ("content", "structure", "none")

# Streaming granularity for byte comparison and logical hashing: large enough
# that per-call overhead vanishes, small enough to never hold a big dataset.
_BLOCK_BYTES = 8 << 20
# Object (vlen) elements are hashed one by one in Python; their itemsize says
# nothing about their real size, so blocks are counted in elements instead.
_OBJECT_BLOCK_ELEMENTS = 1 << 16

# copy_file_range can be unsupported for a filesystem pair or refuse special
# files; these errnos mean "use another copy method", not "the copy failed".
_COPY_FALLBACK_ERRNOS = {
    errno.EXDEV,
    errno.ENOSYS,
    errno.EINVAL,
    errno.EOPNOTSUPP,
    errno.ETXTBSY,
    errno.EPERM,
    errno.EBADF,
}


class H5VerificationError(Exception):
    """The rewritten file lost or altered a dataset of the original; nothing was replaced."""


class H5WriteError(OSError):
    """Writing the working copy or committing it failed (disk full, permissions, a path in
    the way): an infrastructure failure worth a retry, not a problem of the data, which
    stays untouched."""


class H5BusyError(RuntimeError):
    """Another live process is adding to the same file; nothing was changed by this one."""


def temp_path_for(path: str | os.PathLike[str]) -> Path:
    """Where the working copy of ``path`` lives: same directory, so the final rename is atomic."""
    p = Path(path)
    return p.with_name(f".{p.name}{TEMP_SUFFIX}")


class H5Addition:
    """Handle yielded by :func:`h5_additions`; see there."""

    def __init__(self, path: Path, real_path: Path) -> None:
        self.path = path
        self._real = real_path
        self._tmp = temp_path_for(real_path)
        self._tmp_created = False
        # Descriptor of our working copy, holding an exclusive flock on it
        # from creation until it has been renamed over the original.
        self._tmp_fd: int | None = None
        self._made_writable = False
        self._copied_stat: os.stat_result | None = None
        self._deleted: list[str] = []
        self._rw: h5py.File | None = None
        self._ro: h5py.File | None = h5py.File(real_path, "r")

    @property
    def file(self) -> h5py.File:
        """Read-only handle on the original until :meth:`writable` is called, then the writable copy."""
        f = self._rw if self._rw is not None else self._ro
        if f is None:
            raise ValueError(f"{self.path}: no open handle (block finished or copy failed)")
        return f

    @property
    def temp_path(self) -> Path:
        """The hidden working copy next to the original (exists only between writable() and the commit)."""
        return self._tmp

    @property
    def changed(self) -> bool:
        """Whether :meth:`writable` was called, i.e. whether the original is (to be) replaced."""
        return self._made_writable

    @property
    def deleted(self) -> tuple[str, ...]:
        """Absolute HDF5 paths removed via :meth:`delete` (exempt from verification)."""
        return tuple(self._deleted)

    def writable(self) -> h5py.File:
        """Copy the original to the temporary file (first call only) and return the copy opened ``r+``."""
        if self._rw is not None:
            return self._rw
        if self._ro is not None:
            # Objects the caller got from the read-only handle die here; HDF5
            # must not have the original open while we copy it.
            self._ro.close()
            self._ro = None
        self._made_writable = True
        try:
            self._tmp_fd, self._copied_stat = _copy_file(self._real, self._tmp)
        except OSError as exc:
            raise H5WriteError(f"{self.path}: cannot make the working copy {self._tmp}: "
                               f"{exc}") from exc
        self._tmp_created = True
        # HDF5's own flock on a second descriptor would collide with ours.
        self._rw = h5py.File(self._tmp, "r+", locking=False)
        return self._rw

    def delete(self, name: str) -> None:
        """Remove ``name`` (a group, dataset or link) and exempt it and everything below it from verification.

        Raises KeyError without copying anything when ``name`` does not exist.
        """
        key = _normalize(name)
        if key == "/":
            raise ValueError("cannot delete the root group")
        if self.file.get(key, getlink=True) is None:
            raise KeyError(f"{key!r} not found in {self.path}")
        f = self.writable()
        del f[key]
        self._deleted.append(key)

    # -- lifecycle, driven by h5_additions ---------------------------------

    def _commit(self, verify: str) -> None:
        if not self._made_writable:
            self._close_handles()
            return
        if not self._tmp_created:
            # The caller swallowed a failed writable(); its additions went nowhere.
            raise RuntimeError(f"{self.path}: working copy was never created; nothing committed")
        try:
            self._close_handles()
            self._check_tmp_is_ours()
            if verify == "none":
                # Still prove the copy is a closed, openable HDF5 file.
                with h5py.File(self._tmp, "r", locking=False):
                    pass
            else:
                verify_preserved(self._real, self._tmp, exempt=self._deleted, content=verify == "content")
            self._check_original_unchanged()
            assert self._tmp_fd is not None
            _copy_ownership_and_mode(self._real, self._tmp_fd)
            _fsync_fd(self._tmp_fd)
            self._check_tmp_is_ours()
            # Still under our lock, so no other run can have swapped the
            # file at this path since the check above.
            atomic.replace(self._tmp, self._real)
            self._tmp_created = False
            self._release_tmp_fd()
            _fsync_dir(self._real.parent)
        except H5WriteError:
            self._abort()
            raise
        except OSError as exc:
            self._abort()
            raise H5WriteError(f"{self.path}: cannot commit the additions: {exc}") from exc
        except BaseException:
            self._abort()
            raise

    def _abort(self) -> None:
        # Runs while another exception propagates: a failing close of a copy
        # we are about to delete must not replace that exception.
        try:
            self._close_handles()
        except Exception:
            pass
        if self._tmp_created and self._tmp_fd is not None:
            if _path_is_fd(self._tmp, self._tmp_fd):
                self._tmp.unlink(missing_ok=True)
            self._tmp_created = False
        self._release_tmp_fd()

    def _check_tmp_is_ours(self) -> None:
        assert self._tmp_fd is not None
        if not _path_is_fd(self._tmp, self._tmp_fd):
            raise H5BusyError(f"{self.path}: working copy {self._tmp} was replaced by another process")

    def _release_tmp_fd(self) -> None:
        fd, self._tmp_fd = self._tmp_fd, None
        if fd is not None:
            os.close(fd)

    def _close_handles(self) -> None:
        for attr in ("_rw", "_ro"):
            f = getattr(self, attr)
            setattr(self, attr, None)
            if f is not None:
                f.close()

    def _check_original_unchanged(self) -> None:
        # Someone else replaced or rewrote the original while we worked on our
        # copy: replacing it now would silently drop their change.
        assert self._copied_stat is not None
        def identity(st: os.stat_result) -> tuple[int, ...]:
            return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

        if identity(os.stat(self._real)) != identity(self._copied_stat):
            raise H5VerificationError(f"{self._real}: file changed on disk while additions were made; not replaced")


@contextmanager
def h5_additions(path: str | os.PathLike[str], *, verify: str = "content") -> Iterator[H5Addition]:
    """Add groups/datasets to an existing HDF5 file so that a kill at any moment cannot damage it.

    Usage::

        with h5_additions(p) as add:
            if "stats" not in add.file:
                add.writable().create_dataset("stats/mean", data=m)

    ``verify`` decides what is checked before the original is replaced:
    ``"content"`` (default) compares shape, dtype, chunking, filters,
    attributes and stored bytes of every pre-existing dataset,
    ``"structure"`` everything but the bytes, ``"none"`` only that the new
    file opens. Failing verification raises :class:`H5VerificationError`.

    Errors opening the original (missing, not HDF5, truncated) propagate as
    OSError. :class:`H5BusyError` means another process is adding to the
    same file right now. If the block raises, the working copy is removed,
    the original is untouched, and the exception propagates.
    """
    if verify not in VERIFY_MODES:
        raise ValueError(f"verify must be one of {VERIFY_MODES}, got {verify!r}")
    given = Path(path)
    # Replace the file a symlink points to, not the symlink.
    real = Path(os.path.realpath(given))
    try:
        _remove_stale_temp(temp_path_for(real), given)
    except OSError as exc:
        raise H5WriteError(f"{given}: cannot clear the working-copy path "
                           f"{temp_path_for(real)}: {exc}") from exc
    add = H5Addition(given, real)
    try:
        yield add
    except BaseException:
        add._abort()
        raise
    add._commit(verify)


# -- verification ----------------------------------------------------------


def verify_preserved(
    original: str | os.PathLike[str],
    new: str | os.PathLike[str],
    *,
    exempt: Iterable[str] = (),
    content: bool = True,
) -> None:
    """Raise H5VerificationError unless every dataset of ``original`` outside ``exempt`` is unchanged in ``new``."""
    exempt = [_normalize(e) for e in exempt]
    new = Path(new)
    # ``new`` is not opened with HDF5 file locking: it is normally our own
    # working copy, flock-ed by us (see H5Addition); it must not be open for writing.
    with h5py.File(original, "r") as fa, h5py.File(new, "r", locking=False) as fb:
        fd_a = os.open(original, os.O_RDONLY)
        fd_b = os.open(new, os.O_RDONLY)
        try:
            content_checked: set[Any] = set()
            for name in _dataset_paths(fa):
                if _is_under(name, exempt):
                    continue
                da = fa[name]
                db = fb.get(name)
                if not isinstance(db, h5py.Dataset):
                    raise H5VerificationError(f"{new}: dataset {name} is missing or no longer a dataset")
                _check_metadata(name, da, db, new)
                if content and da.id not in content_checked:
                    # A dataset hard-linked under several names has one body.
                    content_checked.add(da.id)
                    _check_content(name, da, db, fd_a, fd_b, new)
        finally:
            os.close(fd_a)
            os.close(fd_b)


def _check_metadata(name: str, da: h5py.Dataset, db: h5py.Dataset, where: Path) -> None:
    def fail(what: str, a: Any, b: Any) -> None:
        raise H5VerificationError(f"{where}: dataset {name}: {what} changed from {a!r} to {b!r}")

    if da.shape != db.shape:
        fail("shape", da.shape, db.shape)
    if da.maxshape != db.maxshape:
        fail("maxshape", da.maxshape, db.maxshape)
    if da.id.get_type() != db.id.get_type():
        fail("dtype", da.dtype, db.dtype)
    pa, pb = da.id.get_create_plist(), db.id.get_create_plist()
    if pa.get_layout() != pb.get_layout():
        fail("layout", pa.get_layout(), pb.get_layout())
    if da.chunks != db.chunks:
        fail("chunk shape", da.chunks, db.chunks)
    fa, fb = _filters(pa), _filters(pb)
    if fa != fb:
        fail("filters", fa, fb)
    if not pa.equal(pb):
        # Catch-all for creation properties not compared above (fill value, external files, ...).
        fail("creation properties", "original", "different")
    names_a, names_b = sorted(da.attrs.keys()), sorted(db.attrs.keys())
    if names_a != names_b:
        fail("attribute names", names_a, names_b)
    for key in names_a:
        ia, ib = da.attrs.get_id(key), db.attrs.get_id(key)
        if ia.get_type() != ib.get_type() or ia.shape != ib.shape:
            fail(f"attribute {key!r} type/shape", (ia.dtype, ia.shape), (ib.dtype, ib.shape))
        if _digest_value(da.attrs[key], da.file) != _digest_value(db.attrs[key], db.file):
            fail(f"attribute {key!r}", da.attrs[key], db.attrs[key])


def _filters(dcpl: h5py.h5p.PropDCID) -> list[tuple[Any, ...]]:
    return [dcpl.get_filter(i) for i in range(dcpl.get_nfilters())]


def _check_content(name: str, da: h5py.Dataset, db: h5py.Dataset, fd_a: int, fd_b: int, where: Path) -> None:
    layout = da.id.get_create_plist().get_layout()
    external = da.id.get_create_plist().get_external_count() > 0
    if da.dtype.hasobject or external or layout not in (h5py.h5d.CHUNKED, h5py.h5d.CONTIGUOUS):
        # Stored bytes of vlen data are heap references, not the values;
        # compact data is tiny; virtual/external data lives elsewhere.
        if _hash_dataset(da) != _hash_dataset(db):
            raise H5VerificationError(f"{where}: dataset {name}: values differ")
        return
    if layout == h5py.h5d.CONTIGUOUS:
        off_a, off_b = da.id.get_offset(), db.id.get_offset()
        size_a, size_b = da.id.get_storage_size(), db.id.get_storage_size()
        if (off_a is None) != (off_b is None) or size_a != size_b:
            raise H5VerificationError(f"{where}: dataset {name}: storage allocation differs")
        if off_a is not None and not _extents_equal(fd_a, off_a, fd_b, off_b, size_a):
            raise H5VerificationError(f"{where}: dataset {name}: stored bytes differ")
        return
    _check_chunks(name, da, db, fd_a, fd_b, where)


def _check_chunks(name: str, da: h5py.Dataset, db: h5py.Dataset, fd_a: int, fd_b: int, where: Path) -> None:
    # Compares the stored (still compressed) chunk bytes: no filter runs, so
    # this costs about one read of the data and works without filter plugins.
    expected: dict[tuple[int, ...], tuple[int, int, int]] = {}
    for off, mask, addr, size in _iter_chunks(da.id):
        expected[off] = (mask, addr, size)
    if len(expected) != db.id.get_num_chunks():
        raise H5VerificationError(
            f"{where}: dataset {name}: {db.id.get_num_chunks()} stored chunks, expected {len(expected)}"
        )
    for off, mask_b, addr_b, size_b in _iter_chunks(db.id):
        want = expected.pop(off, None)
        if want is None:
            raise H5VerificationError(f"{where}: dataset {name}: unexpected chunk at {off}")
        mask_a, addr_a, size_a = want
        if mask_a != mask_b or size_a != size_b or not _extents_equal(fd_a, addr_a, fd_b, addr_b, size_a):
            raise H5VerificationError(f"{where}: dataset {name}: chunk at {off} differs")
    if expected:
        raise H5VerificationError(f"{where}: dataset {name}: chunk at {next(iter(expected))} missing")


def _iter_chunks(dsid: h5py.h5d.DatasetID) -> list[tuple[tuple[int, ...], int, int, int]]:
    out: list[tuple[tuple[int, ...], int, int, int]] = []

    def collect(si: Any) -> None:
        out.append((tuple(si.chunk_offset), si.filter_mask, si.byte_offset, si.size))

    if hasattr(dsid, "chunk_iter"):
        # One pass over the chunk index; get_chunk_info(i) rescans it per call.
        dsid.chunk_iter(collect)
    else:  # h5py built against HDF5 < 1.14
        for i in range(dsid.get_num_chunks()):
            collect(dsid.get_chunk_info(i))
    return out


def _extents_equal(fd_a: int, off_a: int, fd_b: int, off_b: int, size: int) -> bool:
    done = 0
    while done < size:
        n = min(_BLOCK_BYTES, size - done)
        a = os.pread(fd_a, n, off_a + done)
        b = os.pread(fd_b, n, off_b + done)
        if len(a) != n or a != b:
            return False
        done += n
    return True


# -- fingerprints ----------------------------------------------------------


def dataset_fingerprints(path: str | os.PathLike[str]) -> dict[str, str]:
    """Map every dataset path (``/a/b``, one entry per hard link) to a hash of its type, shape and values.

    Values are read in bounded C-order blocks, so the hash does not depend on
    chunking or compression and memory stays bounded. Filter plugins needed to
    decompress the data must be importable (e.g. ``import hdf5plugin``).
    """
    out: dict[str, str] = {}
    with h5py.File(path, "r") as f:
        by_object: dict[Any, str] = {}
        for name in _dataset_paths(f):
            ds = f[name]
            digest = by_object.get(ds.id)
            if digest is None:
                digest = by_object[ds.id] = _hash_dataset(ds)
            out[name] = digest
    return out


def _hash_dataset(ds: h5py.Dataset) -> str:
    h = xxhash.xxh3_128()
    # The HDF5 type encoding pins byte order, string kind and vlen-ness,
    # which numpy dtypes of object arrays do not show.
    h.update(ds.id.get_type().encode())
    h.update(repr(ds.shape).encode())
    if ds.shape is None or ds.size == 0:
        return h.hexdigest()
    dtype = ds.dtype
    if dtype.hasobject:
        budget = _OBJECT_BLOCK_ELEMENTS * max(dtype.itemsize, 1)
    else:
        budget = _BLOCK_BYTES
    for sel in _c_order_blocks(ds.shape, dtype.itemsize, budget, ds.chunks):
        _hash_array(h, np.asarray(ds[sel]), ds.file)
    return h.hexdigest()


def _c_order_blocks(
    shape: tuple[int, ...], itemsize: int, budget: int, chunks: tuple[int, ...] | None
) -> Iterator[tuple[Any, ...]]:
    """Selections whose C-order concatenation is the whole array, each about ``budget`` bytes at most."""
    if not shape:
        yield ()
        return
    n = len(shape)
    suffix = [1] * (n + 1)
    for i in range(n - 1, -1, -1):
        suffix[i] = suffix[i + 1] * shape[i]
    # Outermost axis whose trailing sub-array fits the budget: blocks are
    # slices along it, every axis before it is iterated index by index.
    k = next(i for i in range(n) if suffix[i + 1] * itemsize <= budget or i == n - 1)
    step = max(1, budget // max(1, suffix[k + 1] * itemsize))
    if chunks is not None and step >= chunks[k]:
        # Whole chunks per block, so no chunk is decompressed twice.
        step -= step % chunks[k]
    for outer in np.ndindex(*shape[:k]):
        for start in range(0, shape[k], step):
            yield tuple(outer) + (slice(start, min(start + step, shape[k])),)


def _hash_array(h: Any, arr: np.ndarray, f: h5py.File) -> None:
    if arr.dtype.names:
        # Field by field: padding bytes between fields are uninitialised memory.
        for field in arr.dtype.names:
            _hash_array(h, arr[field], f)
        return
    if not arr.dtype.hasobject:
        h.update(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))
        return
    for value in arr.flat:
        _hash_value(h, value, f)


def _hash_value(h: Any, v: Any, f: h5py.File) -> None:
    if isinstance(v, bytes):
        h.update(b"b%d:" % len(v))
        h.update(v)
    elif isinstance(v, str):
        b = v.encode("utf-8", "surrogatepass")
        h.update(b"s%d:" % len(b))
        h.update(b)
    elif isinstance(v, np.ndarray):
        h.update(f"a{v.dtype.str}{v.shape}:".encode())
        _hash_array(h, v, f)
    elif isinstance(v, np.void) and v.dtype.names:
        for field in v.dtype.names:
            _hash_value(h, v[field], f)
    elif isinstance(v, np.generic):
        h.update(v.dtype.str.encode())
        h.update(v.tobytes())
    elif isinstance(v, h5py.h5r.Reference):
        # Stored reference bytes are file addresses; what they point to is the content.
        h.update(b"r")
        if v:
            target = f[v]
            h.update(str(target.name).encode())
            if isinstance(v, h5py.h5r.RegionReference):
                space = h5py.h5r.get_region(v, target.id)
                h.update(repr(space.get_select_bounds()).encode())
                h.update(repr(space.get_select_npoints()).encode())
    elif isinstance(v, h5py.Empty):
        h.update(f"e{v.dtype.str}".encode())
    else:
        h.update(f"{type(v).__name__}:{v!r}".encode())


def _digest_value(value: Any, f: h5py.File) -> str:
    h = xxhash.xxh3_128()
    if isinstance(value, np.ndarray):
        h.update(f"{value.dtype.str}{value.shape}".encode())
        _hash_array(h, value, f)
    else:
        _hash_value(h, value, f)
    return h.hexdigest()


# -- helpers ---------------------------------------------------------------


def _dataset_paths(f: h5py.File) -> list[str]:
    names: list[str] = []

    def visit(name: str, link: Any) -> None:
        # Soft and external links are not data of this file; the datasets
        # they resolve to are reached (or not) through their hard links.
        if isinstance(link, h5py.HardLink) and isinstance(f.get(name), h5py.Dataset):
            names.append("/" + name)

    if hasattr(f, "visititems_links"):
        f.visititems_links(visit)
    else:  # h5py < 3.11: one name per object instead of one per hard link
        f.visititems(lambda name, obj: names.append("/" + name) if isinstance(obj, h5py.Dataset) else None)
    return names


def _normalize(name: str) -> str:
    return posixpath.normpath("/" + name.strip("/")) if name.strip("/") else "/"


def _is_under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p.rstrip("/") + "/") for p in prefixes)


def _copy_file(src: Path, dst: Path) -> tuple[int, os.stat_result]:
    """Copy ``src`` to a new file ``dst`` (mode 0600 until the commit).

    Returns a descriptor of ``dst`` holding an exclusive flock on it, and
    ``src``'s stat at copy time.
    """
    cloexec = getattr(os, "O_CLOEXEC", 0)
    fd_in = os.open(src, os.O_RDONLY | cloexec)
    try:
        st = os.fstat(fd_in)
        try:
            # O_EXCL: a temp file appearing after our stale-file cleanup
            # belongs to a concurrent run; don't clobber its work.
            fd_out = os.open(dst, os.O_RDWR | os.O_CREAT | os.O_EXCL | cloexec, 0o600)
        except FileExistsError:
            raise H5BusyError(f"{src}: another process is adding to this file ({dst} exists)") from None
        try:
            if not _try_lock(fd_out):
                # A concurrent run's stale-temp check holds it and will delete it.
                raise H5BusyError(f"{src}: another process is adding to this file ({dst} is locked)")
            copied = _copy_fds(fd_in, fd_out, st.st_size)
            if copied != st.st_size:
                raise OSError(errno.EIO, f"short copy: {copied} of {st.st_size} bytes", str(src))
        except BaseException:
            if _path_is_fd(dst, fd_out):
                dst.unlink(missing_ok=True)
            os.close(fd_out)
            raise
        return fd_out, st
    finally:
        os.close(fd_in)


def _try_lock(fd: int) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _path_is_fd(path: Path, fd: int) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def _remove_stale_temp(tmp: Path, original: Path) -> None:
    """Delete a working copy left by a killed run; refuse if its owner is alive."""
    try:
        fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return
    try:
        # A live run holds its flock until the copy is renamed; the kernel
        # drops it when the owner dies, whatever killed it.
        if not _try_lock(fd):
            raise H5BusyError(f"{original}: another process is adding to this file ({tmp} is locked)")
        # Under the lock the path cannot change owner any more: only delete
        # it if it is still the file we locked.
        if _path_is_fd(tmp, fd):
            tmp.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _copy_fds(fd_in: int, fd_out: int, size: int) -> int:
    copied = 0
    methods: list[Callable[[int, int], int]] = []
    if hasattr(os, "copy_file_range"):
        # In-kernel copy; reflinks on btrfs/XFS, so near free there.
        methods.append(lambda n, off: os.copy_file_range(fd_in, fd_out, n, off, off))
    if hasattr(os, "sendfile"):

        def _sendfile(n: int, off: int) -> int:
            os.lseek(fd_out, off, os.SEEK_SET)
            return os.sendfile(fd_out, fd_in, off, n)

        methods.append(_sendfile)

    def _readwrite(n: int, off: int) -> int:
        data = os.pread(fd_in, min(n, _BLOCK_BYTES), off)
        return os.pwrite(fd_out, data, off) if data else 0

    methods.append(_readwrite)
    for method in methods:
        try:
            while copied < size:
                n = method(min(size - copied, 1 << 30), copied)
                if n == 0:
                    # Some filesystems report 0 instead of an error when a
                    # method is unsupported; let the next method decide.
                    break
                copied += n
        except OSError as e:
            if e.errno not in _COPY_FALLBACK_ERRNOS:
                raise
        if copied >= size:
            break
    return copied


def _copy_ownership_and_mode(src: Path, fd: int) -> None:
    st = os.stat(src)
    if hasattr(os, "fchown"):
        dst_st = os.fstat(fd)
        if (dst_st.st_uid, dst_st.st_gid) != (st.st_uid, st.st_gid):
            try:
                os.fchown(fd, st.st_uid, st.st_gid)
            except PermissionError:
                # Only root may give files away; keep our ownership then.
                pass
    os.fchmod(fd, stat.S_IMODE(st.st_mode))


def _fsync_fd(fd: int) -> None:
    os.fsync(fd)


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable across a power loss, not just a kill.
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)
