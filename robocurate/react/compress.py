"""Rewrite an HDF5 recording with GZIP+shuffle, streamed, parallel and crash-safe.

Same output layout as ``twm/compress_h5.py``: every chunked (or contiguous
non-scalar) dataset becomes ``gzip(level)`` + shuffle with the source chunk
shape (contiguous -> ``(1,) + shape[1:]``), each chunk dim clamped to
``min(c, max(s, 1))``; groups, attributes and scalars are copied (scalars
uncompressed). Differences:

* data is streamed chunk by chunk, never a whole dataset in memory;
* chunks are shuffled (HDF5 byte shuffle, done in numpy) and deflated with
  :func:`zlib.compress` on ``workers`` threads (zlib releases the GIL), then
  stored with ``write_direct_chunk`` into a dataset declared with the
  standard shuffle+deflate filters, so any HDF5 reader decodes it; the file
  is in the HDF5 1.10 format, whose chunk indexes are smaller than the
  default's B-trees (the output is no bigger than ``h5repack``'s);
* the result is written to a hidden temp file next to the source, verified
  (shapes, dtypes, attributes, bit-exact values read back through HDF5),
  fsync-ed and atomically renamed over the source; on any failure the temp
  is removed and the source is untouched. A stale temp of a killed run is
  removed first (a live run's temp is flock-ed and makes us raise
  :class:`~robocurate.io.h5safe.H5BusyError`).
"""

from __future__ import annotations

import os
import time
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import h5py
import hdf5plugin  # noqa: F401  (registers BLOSC & co. so sources can be read)
import numpy as np

from robocurate.io import atomic, h5safe
from robocurate.io.h5rows import unshuffle
from robocurate.io.h5safe import H5BusyError, H5VerificationError, temp_path_for

__all__ = ["compress_file", "H5VerificationError"]

_FILTER_SHUFFLE = h5py.h5z.FILTER_SHUFFLE
_FILTER_DEFLATE = h5py.h5z.FILTER_DEFLATE


def compress_file(path: str | os.PathLike[str], level: int = 4, workers: int = 2) -> dict[str, Any]:
    """Rewrite ``path`` in place as gzip(``level``)+shuffle; see the module docstring.

    Returns ``{"path", "status", "bytes_before", "bytes_after", "ratio",
    "seconds", "datasets"}``; status is ``"already_compressed"`` (nothing
    written) when every non-scalar dataset already is shuffle+gzip(level).
    """
    if not 0 <= int(level) <= 9:
        raise ValueError(f"gzip level must be 0..9, got {level!r}")
    level = int(level)
    workers = max(1, int(workers))
    t0 = time.perf_counter()
    given = Path(path)
    real = Path(os.path.realpath(given))
    tmp = temp_path_for(real)
    h5safe._remove_stale_temp(tmp, given)

    try:
        src = h5py.File(real, "r")
    except OSError as e:
        raise OSError(e.errno, f"{given}: cannot open HDF5 file: {e}") from e
    st_before = os.stat(real)
    bytes_before = st_before.st_size
    with src:
        names = h5safe._dataset_paths(src)
        if _already_compressed(src, names, level):
            return {
                "path": str(given),
                "status": "already_compressed",
                "bytes_before": bytes_before,
                "bytes_after": bytes_before,
                "ratio": 1.0,
                "seconds": round(time.perf_counter() - t0, 3),
                "datasets": len(names),
            }

    fd = _create_locked_temp(tmp, given)
    created = True
    try:
        # The 1.10 format: fixed/extensible-array chunk indexes, smaller than the version-1
        # B-trees of HDF5's default (and h5repack's); read by any HDF5 >= 1.10 (2016).
        with h5py.File(real, "r") as src, \
                h5py.File(tmp, "w", locking=False, libver=("v110", "latest")) as dst:
            n = _copy_tree(src, dst, level, workers)
        _verify(real, tmp, workers)
        identity = lambda s: (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns)  # noqa: E731
        if identity(os.stat(real)) != identity(st_before):
            raise H5VerificationError(f"{given}: file changed on disk during compression; not replaced")
        h5safe._copy_ownership_and_mode(real, fd)
        os.fsync(fd)
        if not h5safe._path_is_fd(tmp, fd):
            raise H5BusyError(f"{given}: temp file {tmp} was replaced by another process")
        bytes_after = os.fstat(fd).st_size
        atomic.replace(tmp, real)
        created = False
        h5safe._fsync_dir(real.parent)
    except BaseException:
        if created and h5safe._path_is_fd(tmp, fd):
            tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    return {
        "path": str(given),
        "status": "compressed",
        "bytes_before": bytes_before,
        "bytes_after": bytes_after,
        "ratio": round(bytes_after / bytes_before, 4) if bytes_before else 1.0,
        "seconds": round(time.perf_counter() - t0, 3),
        "datasets": n,
    }


# -- planning --------------------------------------------------------------


def _target_chunks(ds: h5py.Dataset) -> tuple[int, ...] | None:
    """Chunk shape of the rewritten dataset, or None for a scalar/null one (stored as is)."""
    if ds.shape is None or ds.ndim == 0:
        return None
    chunks = ds.chunks if ds.chunks is not None else (1,) + tuple(ds.shape[1:])
    return tuple(min(int(c), max(int(s), 1)) for c, s in zip(chunks, ds.shape))


def _filters(ds: h5py.Dataset) -> list[tuple[int, tuple[int, ...]]]:
    dcpl = ds.id.get_create_plist()
    return [(f[0], tuple(f[2])) for f in (dcpl.get_filter(i) for i in range(dcpl.get_nfilters()))]


def _already_compressed(f: h5py.File, names: list[str], level: int) -> bool:
    for name in names:
        ds = f[name]
        if _target_chunks(ds) is None:
            continue
        if ds.chunks is None:
            return False
        flt = _filters(ds)
        if [c for c, _ in flt] != [_FILTER_SHUFFLE, _FILTER_DEFLATE] or flt[1][1][:1] != (level,):
            return False
    return True


def _create_locked_temp(tmp: Path, given: Path) -> int:
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    if not h5safe._try_lock(fd):
        os.close(fd)
        raise H5BusyError(f"{given}: another process is compressing this file ({tmp} is locked)")
    return fd


# -- copying ---------------------------------------------------------------


def _copy_attrs(src: h5py.AttributeManager, dst: h5py.AttributeManager) -> None:
    for key in src.keys():
        value = src[key]
        if isinstance(value, h5py.Empty):
            dst[key] = value
        else:
            dst.create(key, value, dtype=src.get_id(key).dtype)


def _copy_tree(src: h5py.File, dst: h5py.File, level: int, workers: int) -> int:
    _copy_attrs(src.attrs, dst.attrs)
    first_name: dict[Any, str] = {}
    entries: list[tuple[str, Any]] = []
    src.visititems_links(lambda name, link: entries.append((name, link)))
    n = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="h5gzip") as pool:
        for name, link in entries:
            if isinstance(link, h5py.SoftLink):
                dst[name] = h5py.SoftLink(link.path)
                continue
            if isinstance(link, h5py.ExternalLink):
                dst[name] = h5py.ExternalLink(link.filename, link.path)
                continue
            obj = src[name]
            if obj.id in first_name:  # a second hard link to an object already copied
                dst[name] = dst[first_name[obj.id]]
                if isinstance(obj, h5py.Dataset):
                    n += 1
                continue
            first_name[obj.id] = name
            if isinstance(obj, h5py.Group):
                g = dst.require_group(name)
                _copy_attrs(obj.attrs, g.attrs)
            elif isinstance(obj, h5py.Dataset):
                _copy_dataset(obj, dst, name, level, pool, workers)
                n += 1
    return n


def _copy_dataset(ds: h5py.Dataset, dst: h5py.File, name: str, level: int, pool: ThreadPoolExecutor, workers: int) -> None:
    chunks = _target_chunks(ds)
    if chunks is None:
        if ds.shape is None:
            out = dst.create_dataset(name, data=h5py.Empty(ds.dtype))
        else:
            out = dst.create_dataset(name, data=ds[()], dtype=ds.dtype)
        _copy_attrs(ds.attrs, out.attrs)
        return
    maxshape = ds.maxshape if ds.chunks is not None else None
    if any(c > n for c, n in zip(chunks, ds.shape)):
        # An empty stream (e.g. an inactive OptiTrack side): HDF5 only accepts the clamped
        # chunk (1, ...) when that dimension may grow.
        maxshape = tuple(None if c > n else (m if maxshape else n)
                         for c, n, m in zip(chunks, ds.shape, maxshape or ds.shape))
    out = dst.create_dataset(
        name,
        shape=ds.shape,
        maxshape=maxshape,
        dtype=ds.dtype,
        chunks=chunks,
        compression="gzip",
        compression_opts=level,
        shuffle=True,
    )
    _copy_attrs(ds.attrs, out.attrs)
    if ds.size == 0:
        return
    dt = ds.dtype
    if not _direct(dt, out):
        # Types whose in-memory bytes may differ from the file's (vlen,
        # compound, ...): let HDF5 encode them, still chunk by chunk.
        for sel in _chunk_selections(ds.shape, chunks):
            out[sel] = ds[sel]
        return
    itemsize = dt.itemsize
    window = 4 * workers
    pending: deque = deque()
    dsid = out.id
    for sel in _chunk_selections(ds.shape, chunks):
        block = ds[sel]
        offset = tuple(s.start for s in sel)
        pending.append((offset, pool.submit(_encode_chunk, block, chunks, itemsize, level)))
        if len(pending) >= window:
            off, fut = pending.popleft()
            dsid.write_direct_chunk(off, fut.result(), filter_mask=0)
    while pending:
        off, fut = pending.popleft()
        dsid.write_direct_chunk(off, fut.result(), filter_mask=0)


def _direct(dt: np.dtype, stored: h5py.Dataset) -> bool:
    """Whether chunks of this type are written (and verified) as raw bytes."""
    return (not dt.hasobject and dt.names is None and dt.subdtype is None
            and dt.kind in "biufcS" and stored.id.get_type().get_size() == dt.itemsize)


def _encode_chunk(block: np.ndarray, chunks: tuple[int, ...], itemsize: int, level: int) -> bytes:
    if block.shape != chunks:
        # Edge chunk: HDF5 stores full chunks; the padding is never read.
        full = np.zeros(chunks, dtype=block.dtype)
        full[tuple(slice(0, s) for s in block.shape)] = block
        block = full
    raw = np.ascontiguousarray(block).reshape(-1).view(np.uint8)
    if itemsize > 1 and block.size > 1:
        # HDF5's shuffle filter: all first bytes, then all second bytes, ...
        raw = np.ascontiguousarray(raw.reshape(-1, itemsize).T)
    return zlib.compress(raw, level)


def _chunk_selections(shape: tuple[int, ...], chunks: tuple[int, ...]) -> Iterator[tuple[slice, ...]]:
    grid = [-(-s // c) for s, c in zip(shape, chunks)]
    for idx in np.ndindex(*grid):
        yield tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, chunks, shape))


# -- verification ----------------------------------------------------------


def _verify(original: str | os.PathLike[str], new: str | os.PathLike[str], workers: int = 2) -> None:
    """Raise H5VerificationError unless ``new`` holds every dataset, group and attribute of ``original`` bit-exact.

    Chunks written by ``_encode_chunk`` are read back raw from ``new`` and inflated and
    unshuffled on ``workers`` threads (zlib releases the GIL; HDF5 decoding would run
    under h5py's one lock), then compared byte for byte with the source; each such
    dataset's first chunk also goes through HDF5's own filter pipeline, which checks the
    declared filters decode what was stored. Everything else is read through HDF5.
    """
    with h5py.File(original, "r") as fa, h5py.File(new, "r", locking=False) as fb, \
            ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="h5verify") as pool:
        if not _attrs_equal(fa.attrs, fb.attrs):
            raise H5VerificationError(f"{new}: root attributes differ")
        groups: list[str] = []
        fa.visititems(lambda name, obj: groups.append(name) if isinstance(obj, h5py.Group) else None)
        for name in groups:
            gb = fb.get(name)
            if not isinstance(gb, h5py.Group) or not _attrs_equal(fa[name].attrs, gb.attrs):
                raise H5VerificationError(f"{new}: group /{name} missing or its attributes differ")
        for name in h5safe._dataset_paths(fa):
            da, db = fa[name], fb.get(name)
            if not isinstance(db, h5py.Dataset):
                raise H5VerificationError(f"{new}: dataset {name} missing")
            if da.shape != db.shape or da.dtype != db.dtype:
                raise H5VerificationError(
                    f"{new}: dataset {name}: shape/dtype {da.shape}/{da.dtype} became {db.shape}/{db.dtype}"
                )
            if not _attrs_equal(da.attrs, db.attrs):
                raise H5VerificationError(f"{new}: dataset {name}: attributes differ")
            if da.shape is None or da.size == 0:
                continue
            if da.ndim > 0 and db.chunks and _direct(da.dtype, db) and \
                    [c for c, _ in _filters(db)] == [_FILTER_SHUFFLE, _FILTER_DEFLATE]:
                _verify_direct_chunks(da, db, pool, 4 * max(1, workers), f"{new}: dataset {name}")
                continue
            sels = [()] if da.ndim == 0 else _chunk_selections(da.shape, db.chunks or da.shape)
            for sel in sels:
                if not _arrays_equal(np.asarray(da[sel]), np.asarray(db[sel])):
                    raise H5VerificationError(f"{new}: dataset {name}: values differ at {sel}")


def _verify_direct_chunks(da: h5py.Dataset, db: h5py.Dataset, pool: ThreadPoolExecutor,
                          window: int, what: str) -> None:
    chunks, itemsize = db.chunks, db.dtype.itemsize
    pending: deque = deque()

    def settle(sel, fut) -> None:
        if not fut.result():
            raise H5VerificationError(f"{what}: values differ at {sel}")

    for i, sel in enumerate(_chunk_selections(da.shape, chunks)):
        block = np.asarray(da[sel])
        if i == 0 and not _arrays_equal(block, np.asarray(db[sel])):
            raise H5VerificationError(f"{what}: HDF5 decodes other values at {sel}")
        try:
            mask, raw = db.id.read_direct_chunk(tuple(s.start for s in sel))
        except (KeyError, OSError, RuntimeError, ValueError) as exc:
            raise H5VerificationError(f"{what}: chunk at {sel} unreadable ({exc})") from exc
        if mask != 0:
            raise H5VerificationError(f"{what}: chunk at {sel} skips filters (mask {mask})")
        pending.append((sel, pool.submit(_chunk_decodes_to, raw, block, chunks, itemsize)))
        if len(pending) >= window:
            settle(*pending.popleft())
    while pending:
        settle(*pending.popleft())


def _chunk_decodes_to(raw: bytes, block: np.ndarray, chunks: tuple[int, ...], itemsize: int) -> bool:
    """Inverse of ``_encode_chunk``: inflate, unshuffle, compare the chunk's valid region."""
    try:
        data = np.frombuffer(zlib.decompress(raw), dtype=np.uint8)
    except zlib.error:
        return False
    if data.size != int(np.prod(chunks)) * itemsize:
        return False
    full = unshuffle(data, itemsize).view(block.dtype).reshape(chunks)
    region = full[tuple(slice(0, s) for s in block.shape)]
    return np.ascontiguousarray(region).tobytes() == np.ascontiguousarray(block).tobytes()


def _attrs_equal(a: h5py.AttributeManager, b: h5py.AttributeManager) -> bool:
    if sorted(a.keys()) != sorted(b.keys()):
        return False
    for key in a.keys():
        va, vb = a[key], b[key]
        if isinstance(va, h5py.Empty) or isinstance(vb, h5py.Empty):
            if not (isinstance(va, h5py.Empty) and isinstance(vb, h5py.Empty) and va.dtype == vb.dtype):
                return False
            continue
        if a.get_id(key).get_type() != b.get_id(key).get_type():
            return False
        if not _arrays_equal(np.asarray(va), np.asarray(vb)):
            return False
    return True


def _arrays_equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.names:
        return all(_arrays_equal(a[f], b[f]) for f in a.dtype.names)
    if a.dtype.hasobject:
        return all(_values_equal(x, y) for x, y in zip(a.reshape(-1), b.reshape(-1)))
    return np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def _values_equal(x: Any, y: Any) -> bool:
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and _arrays_equal(x, y)
    return type(x) is type(y) and x == y
