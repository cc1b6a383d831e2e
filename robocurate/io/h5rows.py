"""Row-range reads of HDF5 datasets at the byte offsets HDF5 reports, off HDF5's lock.

Why not just h5py: every h5py call runs under one process-wide lock, and HDF5 decodes a
read's chunks one after another on the calling thread, copying each through its chunk
cache. Reading a 480x640 video stream that way is one core's worth of work no matter how
many threads ask for it. For two plain layouts the file offsets of the data are known:

- contiguous, unfiltered datasets: one ``pread`` per row range;
- chunked datasets whose chunks span whole rows (``chunks[1:] == shape[1:]``, any number
  of rows per chunk) with filters among deflate, shuffle and Blosc: the chunk index
  (``H5Dchunk_iter``, one pass) gives each stored chunk's offset, size and filter mask;
  a read ``pread``-s its chunks and decodes them with GIL-free decoders: ``zlib`` for
  deflate, numpy for shuffle, and for Blosc the very c-blosc library that hdf5plugin
  registers with HDF5 (``blosc_decompress_ctx`` through ctypes), so stored bytes decode
  exactly as HDF5 would decode them. A chunk stored unfiltered (filter mask: HDF5 skips
  an optional filter that could not shrink it) is read straight into the destination.

Every other layout (other filters, partial-row chunks, external or virtual storage,
non-native byte order, userblocks, other file drivers) is read through h5py, and so is
any read the fast path cannot serve: an unwritten chunk (HDF5 returns the fill value), a
short read or a chunk that does not decode. h5py then either returns the data or raises
its own error, so callers see one behaviour for bad files. A reader checks its first
stored row against h5py when built and uses h5py alone if they differ.

Reads are thread-safe: several threads may read one reader concurrently, which is the
point (the decoders release the GIL).
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
import zlib
from functools import lru_cache

import h5py
import numpy as np

__all__ = ["RowReader", "unshuffle"]

_FILTER_DEFLATE, _FILTER_SHUFFLE, _FILTER_BLOSC = 1, 2, 32001
_H5, _CONTIG, _CHUNK = "h5py", "contiguous", "chunked"
_PREADV = hasattr(os, "preadv")


class _Fallback(Exception):
    """This read cannot be served from the stored bytes: read it through h5py."""


@lru_cache(maxsize=1)
def _blosc_decompress():
    """hdf5plugin's c-blosc ``blosc_decompress_ctx``, or None where it cannot be loaded."""
    try:
        import hdf5plugin
    except ImportError:
        return None
    for path in sorted(glob.glob(os.path.join(hdf5plugin.PLUGIN_PATH, "*h5blosc.*"))):
        try:
            fn = ctypes.CDLL(path).blosc_decompress_ctx
        except (OSError, AttributeError):
            continue
        # int blosc_decompress_ctx(const void *src, void *dest, size_t destsize, int nthreads)
        fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        fn.restype = ctypes.c_int
        return fn
    return None


class RowReader:
    """Reads rows ``lo:hi`` of one dataset; see the module docstring.

    ``fd``: a read-only descriptor of the dataset's file (the caller owns it), or None
    for h5py-only reads. ``mode`` tells which path serves it: ``"contiguous"``,
    ``"chunked"`` or ``"h5py"``. The chunk index is read once, when the reader is built:
    build readers over files that are not being written.
    """

    __slots__ = ("ds", "fd", "dtype", "row_shape", "row_bytes", "mode", "offset", "rows",
                 "table", "filters", "_all", "_local")

    def __init__(self, ds: h5py.Dataset, fd: int | None) -> None:
        self.ds = ds
        self.fd = fd
        self.dtype = ds.dtype
        self.row_shape = tuple(ds.shape[1:]) if ds.ndim else ()
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * ds.dtype.itemsize
        self.mode = _H5
        self.offset = 0
        self.rows = int(ds.chunks[0]) if ds.chunks and ds.ndim else 1  # rows per chunk
        self.table: list[tuple[int, int, int]] = []  # per chunk: offset (-1: unwritten), size, mask
        self.filters: list[tuple[int, tuple[int, ...]]] = []
        self._all: list[int] = []
        self._local = threading.local()
        if fd is None or not _PREADV or ds.ndim < 1 or ds.shape[0] == 0 or self.row_bytes == 0:
            return
        if not self.dtype.isnative or self.dtype.kind not in "biuf":
            return
        try:
            self._plan()
        except Exception:  # noqa: BLE001  (any surprise: the plain h5py path)
            self.mode = _H5

    # ------------------------------------------------------------------ planning
    def _plan(self) -> None:
        ds = self.ds
        f = ds.file
        if f.driver != "sec2" or f.userblock_size:
            return  # chunk addresses are then not plain file offsets
        if ds.id.get_type().get_size() != self.dtype.itemsize:
            return
        plist = ds.id.get_create_plist()
        if plist.get_external_count():
            return
        layout = plist.get_layout()
        filters = []
        for k in range(plist.get_nfilters()):
            code, _flags, values, _name = plist.get_filter(k)
            filters.append((int(code), tuple(int(v) for v in values)))
        if layout == h5py.h5d.CONTIGUOUS and not filters:
            offset = ds.id.get_offset()
            if offset is None:
                return  # storage never allocated: h5py returns the fill value
            self.offset, self.mode = int(offset), _CONTIG
        elif layout == h5py.h5d.CHUNKED and tuple(ds.chunks[1:]) == self.row_shape:
            codes = {c for c, _ in filters}
            if not codes <= {_FILTER_DEFLATE, _FILTER_SHUFFLE, _FILTER_BLOSC}:
                return
            if _FILTER_BLOSC in codes and _blosc_decompress() is None:
                return
            n_chunks = -(-ds.shape[0] // self.rows)
            table = [(-1, 0, 0)] * n_chunks

            def visit(info) -> None:
                k = info.chunk_offset[0] // self.rows
                if 0 <= k < n_chunks:
                    table[k] = (int(info.byte_offset), int(info.size), int(info.filter_mask))

            ds.id.chunk_iter(visit)
            self.table, self.filters, self.mode = table, filters, _CHUNK
            self._all = list(range(len(filters)))
        else:
            return
        first = 0 if self.mode == _CONTIG else next(
            (k * self.rows for k, (offset, _, _) in enumerate(self.table) if offset >= 0), None)
        if first is None:
            self.mode = _H5
            return
        got = np.empty((1,) + self.row_shape, self.dtype)
        try:
            self._fast(first, first + 1, got)
        except (_Fallback, OSError):
            self.mode = _H5
            return
        if got.tobytes() != ds[first:first + 1].tobytes():
            self.mode = _H5  # offsets not what this code assumes: never trust them

    # ------------------------------------------------------------------ reading
    def read(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo:hi`` (``lo < hi``) as a new writable, native-order array."""
        if self.mode == _H5:
            arr = self.ds[lo:hi]
            if not arr.dtype.isnative:
                arr = arr.astype(arr.dtype.newbyteorder("="))  # torch takes native order only
            return arr
        out = np.empty((hi - lo,) + self.row_shape, self.dtype)
        self.read_into(lo, hi, out)
        return out

    def read_into(self, lo: int, hi: int, out: np.ndarray) -> None:
        """Rows ``lo:hi`` into ``out`` (C-contiguous, ``(hi - lo, *row_shape)``, the
        dataset's dtype). Errors are h5py's (the fast path falls back to it)."""
        if self.mode != _H5 and out.dtype == self.dtype and out.flags.c_contiguous:
            try:
                self._fast(lo, hi, out)
                return
            except (_Fallback, OSError, zlib.error, ValueError):
                pass
        if hi > lo:
            self.ds.read_direct(out, np.s_[lo:hi], np.s_[0:hi - lo])

    def _fast(self, lo: int, hi: int, out: np.ndarray) -> None:
        if self.mode == _CONTIG:
            _pread_into(self.fd, out, self.offset + lo * self.row_bytes)
            return
        rows = self.rows
        flat = out.reshape(hi - lo, -1).view(np.uint8)
        for k in range(lo // rows, (hi - 1) // rows + 1):
            c0 = k * rows
            a, b = max(lo, c0), min(hi, c0 + rows)
            if a == c0 and b == c0 + rows:  # the whole chunk lands in out
                self._chunk(k, flat[a - lo:b - lo])
            else:  # the dataset's last chunk, or a range starting or ending mid-chunk
                whole = self._scratch(rows * self.row_bytes).reshape(rows, -1)
                self._chunk(k, whole)
                flat[a - lo:b - lo] = whole[a - c0:b - c0]

    def _scratch(self, nbytes: int) -> np.ndarray:
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.size < nbytes:
            buf = self._local.buf = np.empty(nbytes, np.uint8)
        return buf[:nbytes]

    def _chunk(self, k: int, dst: np.ndarray) -> None:
        """Chunk ``k``, decoded, into ``dst`` (C-contiguous uint8, one chunk's bytes)."""
        offset, size, mask = self.table[k]
        if offset < 0:
            raise _Fallback("chunk never written")
        active = (self._all if mask == 0
                  else [i for i in range(len(self.filters)) if not mask >> i & 1])
        if not active:  # stored as is: no filters, or HDF5 skipped them for this chunk
            if size != dst.nbytes:
                raise _Fallback("unfiltered chunk of the wrong size")
            _pread_into(self.fd, dst, offset)
            return
        data = os.pread(self.fd, size, offset)
        if len(data) != size:
            raise _Fallback("short read")
        for i in reversed(active):  # decoding undoes the pipeline from its last filter
            code, values = self.filters[i]
            if code == _FILTER_BLOSC:
                data = _unblosc(data, dst if i == active[0] else None, dst.nbytes)
            elif code == _FILTER_DEFLATE:
                data = zlib.decompress(data, bufsize=dst.nbytes)  # exact size: no regrowth
            else:
                data = unshuffle(data, values[0] if values else self.dtype.itemsize)
        if data is not dst:
            src = np.frombuffer(data, np.uint8)
            if src.size != dst.nbytes:
                raise _Fallback("chunk decodes to the wrong size")
            dst.reshape(-1)[:] = src


def _pread_into(fd: int, dst: np.ndarray, offset: int) -> None:
    # One call: a regular file returns less than asked only at its end (truncated).
    if os.preadv(fd, [dst], offset) != dst.nbytes:
        raise _Fallback("short read")


def _unblosc(data, dst: np.ndarray | None, nbytes: int):
    """A Blosc 1 frame decoded into ``dst`` (or a new buffer), validated first: the
    library trusts the header's sizes, so they must match what HDF5 stored."""
    if len(data) < 16:
        raise _Fallback("Blosc frame shorter than its header")
    header = np.frombuffer(data, np.uint32, count=3, offset=4)
    if int(header[0]) != nbytes or int(header[2]) != len(data):
        raise _Fallback("Blosc header sizes disagree with the chunk")
    out = dst if dst is not None else np.empty(nbytes, np.uint8)
    if _blosc_decompress()(bytes(data), out.ctypes.data, nbytes, 1) != nbytes:
        raise _Fallback("Blosc could not decode the chunk")
    return out


def unshuffle(data, elem: int) -> np.ndarray:
    """HDF5's shuffle filter undone: byte planes back to interleaved ``elem``-byte
    elements (uint8 array)."""
    src = np.frombuffer(data, np.uint8)
    if elem <= 1 or src.size <= elem:
        return src
    whole = src.size // elem * elem
    out = np.empty_like(src)
    out[:whole].reshape(-1, elem)[:] = src[:whole].reshape(elem, -1).T
    out[whole:] = src[whole:]  # HDF5 leaves a partial trailing element as it was
    return out
