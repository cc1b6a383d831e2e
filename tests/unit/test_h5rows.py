"""io.h5rows: reads at HDF5's byte offsets must equal h5py's, layout by layout."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import h5py
import hdf5plugin
import numpy as np
import pytest

from robocurate.io.h5rows import RowReader

N = 11  # rows: an odd count leaves a partial last chunk for multi-row chunks


def _frames(rng, dtype=np.uint8, shape=(N, 6, 8, 3)):
    if np.dtype(dtype).kind == "f":
        return rng.normal(0, 1, shape).astype(dtype)
    smooth = np.cumsum(rng.integers(0, 3, shape), axis=2) % 256  # compressible
    return smooth.astype(dtype)


LAYOUTS = {
    # name: (create_dataset kwargs, expected mode)
    "contiguous": ({}, "contiguous"),
    "raw_1": (dict(chunks=(1, 6, 8, 3)), "chunked"),
    "gzip_1": (dict(chunks=(1, 6, 8, 3), compression="gzip"), "chunked"),
    "shuffle_gzip_3": (dict(chunks=(3, 6, 8, 3), compression="gzip", shuffle=True), "chunked"),
    "blosc_lz4_1": (dict(chunks=(1, 6, 8, 3), **hdf5plugin.Blosc(cname="lz4")), "chunked"),
    "blosc_lz4hc_4": (dict(chunks=(4, 6, 8, 3), **hdf5plugin.Blosc(cname="lz4hc")), "chunked"),
    "blosc_zstd_bitshuffle_2": (dict(chunks=(2, 6, 8, 3), **hdf5plugin.Blosc(
        cname="zstd", shuffle=hdf5plugin.Blosc.BITSHUFFLE)), "chunked"),
    "blosc_blosclz_noshuffle_1": (dict(chunks=(1, 6, 8, 3), **hdf5plugin.Blosc(
        cname="blosclz", shuffle=hdf5plugin.Blosc.NOSHUFFLE)), "chunked"),
    "blosc_zlib_1": (dict(chunks=(1, 6, 8, 3), **hdf5plugin.Blosc(cname="zlib")), "chunked"),
    "partial_rows": (dict(chunks=(1, 3, 8, 3), compression="gzip"), "h5py"),
    "fletcher32": (dict(chunks=(1, 6, 8, 3), fletcher32=True), "h5py"),
    "lz4_plugin": (dict(chunks=(1, 6, 8, 3), **hdf5plugin.LZ4()), "h5py"),
}
RANGES = [(0, N), (0, 1), (N - 1, N), (1, 4), (2, 9), (5, 6), (3, N)]


@pytest.fixture(scope="module")
def layout_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("h5rows") / "layouts.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for dtype in (np.uint8, np.uint16, np.float32):
            data = _frames(rng, dtype)
            for name, (kw, _) in LAYOUTS.items():
                f.create_dataset(f"{np.dtype(dtype).name}/{name}", data=data, **kw)
        f.create_dataset("uint8/big_endian", data=_frames(rng, np.float32).astype(">f4"),
                         chunks=(1, 6, 8, 3))
        sparse = f.create_dataset("uint8/sparse", shape=(N, 6, 8, 3), dtype=np.uint8,
                                  chunks=(2, 6, 8, 3), compression="gzip", fillvalue=7)
        sparse[4:8] = _frames(rng)[4:8]  # chunks 0, 1 and 4, 5 never written
        f.create_dataset("uint8/unallocated", shape=(N, 4), dtype=np.int16, fillvalue=-3)
        noise = rng.integers(0, 256, (N, 64, 64, 3), dtype=np.uint8)
        # Incompressible rows: the optional filters are skipped and the chunks stored raw.
        f.create_dataset("uint8/noise_blosc", data=noise, chunks=(1, 64, 64, 3),
                         **hdf5plugin.Blosc(cname="lz4"))
        f.create_dataset("uint8/noise_gzip", data=noise, chunks=(1, 64, 64, 3),
                         compression="gzip", shuffle=True)
        f.create_dataset("uint8/scalar_rows", data=np.arange(N, dtype=np.float64),
                         chunks=(4,), compression="gzip")
    return path


def _names(path):
    out = []
    with h5py.File(path) as f:
        f.visititems(lambda n, o: out.append(n) if isinstance(o, h5py.Dataset) else None)
    return out


def test_every_layout_reads_as_h5py_does(layout_file):
    fd = os.open(layout_file, os.O_RDONLY)
    modes = {}
    try:
        with h5py.File(layout_file) as f:
            for name in _names(layout_file):
                ds = f[name]
                rd = RowReader(ds, fd)
                modes[name] = rd.mode
                full = ds[()]
                for lo, hi in RANGES:
                    got = rd.read(lo, hi)
                    assert got.dtype == full.dtype.newbyteorder("="), name
                    np.testing.assert_array_equal(got, full[lo:hi], err_msg=f"{name}[{lo}:{hi}]")
                    into = np.full((hi - lo, *full.shape[1:]), 99, dtype=ds.dtype)
                    rd.read_into(lo, hi, into)
                    np.testing.assert_array_equal(into, full[lo:hi], err_msg=name)
    finally:
        os.close(fd)
    for dtype in ("uint8", "uint16", "float32"):
        for name, (_, mode) in LAYOUTS.items():
            assert modes[f"{dtype}/{name}"] == mode, (dtype, name)
    assert modes["uint8/big_endian"] == "h5py"
    assert modes["uint8/sparse"] == "chunked"  # unwritten chunks: those reads use h5py
    assert modes["uint8/unallocated"] == "h5py"
    assert modes["uint8/noise_blosc"] == modes["uint8/noise_gzip"] == "chunked"
    assert modes["uint8/scalar_rows"] == "chunked"


def test_incompressible_chunks_are_stored_with_filters_skipped(layout_file):
    """The layout the raw-read path exists for; if HDF5 stopped skipping filters for
    such chunks, the test above would no longer cover it."""
    with h5py.File(layout_file) as f:
        masks = {f[n].id.read_direct_chunk((0, 0, 0, 0))[0]
                 for n in ("uint8/noise_blosc", "uint8/noise_gzip")}
    assert masks != {0}


def test_without_a_descriptor_everything_goes_through_h5py(layout_file):
    with h5py.File(layout_file) as f:
        rd = RowReader(f["uint8/gzip_1"], None)
        assert rd.mode == "h5py"
        np.testing.assert_array_equal(rd.read(2, 5), f["uint8/gzip_1"][2:5])


def test_concurrent_reads_of_one_reader(layout_file):
    fd = os.open(layout_file, os.O_RDONLY)
    try:
        with h5py.File(layout_file) as f:
            for name in ("uint8/blosc_lz4hc_4", "uint16/shuffle_gzip_3", "uint8/noise_blosc"):
                ds = f[name]
                full, rd = ds[()], RowReader(ds, fd)
                jobs = [(lo, hi) for lo in range(N) for hi in range(lo + 1, N + 1)] * 4

                def check(job, ds=ds, full=full, rd=rd):
                    lo, hi = job
                    out = np.empty((hi - lo, *ds.shape[1:]), ds.dtype)
                    rd.read_into(lo, hi, out)
                    return np.array_equal(out, full[lo:hi])

                with ThreadPoolExecutor(4) as pool:
                    assert all(pool.map(check, jobs)), name
    finally:
        os.close(fd)


def _corrupt_chunk(path, name, row):
    with h5py.File(path) as f:
        ds = f[name]
        info = ds.id.get_chunk_info_by_coord((row,) + (0,) * (ds.ndim - 1))
        offset, size = info.byte_offset, info.size
    with open(path, "r+b") as fh:
        fh.seek(offset + size // 2)
        fh.write(b"\xff" * 8)
    return offset


def test_a_corrupt_chunk_gives_h5pys_error_not_garbage(tmp_path):
    path = tmp_path / "c.h5"
    data = _frames(np.random.default_rng(1))
    with h5py.File(path, "w") as f:
        f.create_dataset("gz", data=data, chunks=(1, 6, 8, 3), compression="gzip")
    _corrupt_chunk(path, "gz", 4)
    fd = os.open(path, os.O_RDONLY)
    try:
        with h5py.File(path) as f:
            rd = RowReader(f["gz"], fd)
            assert rd.mode == "chunked"
            np.testing.assert_array_equal(rd.read(0, 4), data[:4])
            with pytest.raises(OSError):
                rd.read(3, 6)
            with pytest.raises(OSError):
                rd.read_into(4, 5, np.empty((1, 6, 8, 3), np.uint8))
    finally:
        os.close(fd)


def test_a_file_truncated_while_open_reads_as_h5py_reads_it(tmp_path):
    """HDF5 refuses to open a truncated file; cut short under an open handle, it reads
    the missing bytes as zeros. The short pread falls back to h5py: the same answer."""
    path = tmp_path / "t.h5"
    data = _frames(np.random.default_rng(2))
    with h5py.File(path, "w") as f:
        f.create_dataset("raw", data=data, chunks=(1, 6, 8, 3))
        f.create_dataset("meta", data=np.arange(3))  # metadata after the chunks
    with h5py.File(path) as f:
        last = f["raw"].id.get_chunk_info_by_coord((N - 1, 0, 0, 0)).byte_offset
    fd = os.open(path, os.O_RDONLY)
    try:
        with h5py.File(path) as f:
            rd = RowReader(f["raw"], fd)
            os.truncate(path, last + 10)  # the last row's chunk is cut short
            np.testing.assert_array_equal(rd.read(0, 3), data[:3])
            tail = rd.read(N - 2, N)
            np.testing.assert_array_equal(tail, f["raw"][N - 2:N])
            assert tail[0].tobytes() == data[N - 2].tobytes()
            assert tail[1].tobytes() != data[N - 1].tobytes()
    finally:
        os.close(fd)
    with pytest.raises(OSError):
        h5py.File(path)


def test_a_file_with_a_userblock_reads_through_h5py(tmp_path):
    path = tmp_path / "u.h5"
    data = _frames(np.random.default_rng(3))
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset("gz", data=data, chunks=(1, 6, 8, 3), compression="gzip")
    fd = os.open(path, os.O_RDONLY)
    try:
        with h5py.File(path) as f:
            rd = RowReader(f["gz"], fd)
            assert rd.mode == "h5py"
            np.testing.assert_array_equal(rd.read(2, 7), data[2:7])
    finally:
        os.close(fd)


def test_the_fast_layouts_never_touch_h5pys_read(layout_file, monkeypatch):
    """Equal results alone would not show the decoders ran: a fast path that always
    fell back would pass the other tests."""
    fd = os.open(layout_file, os.O_RDONLY)
    try:
        with h5py.File(layout_file) as f:
            readers = {n: RowReader(f[n], fd) for n in _names(layout_file)}
            full = {n: f[n][()] for n in readers}

            def refuse(*args, **kwargs):
                raise AssertionError("read through h5py")

            monkeypatch.setattr(h5py.Dataset, "read_direct", refuse)
            served = 0
            for name, rd in readers.items():
                if rd.mode == "h5py" or name == "uint8/sparse":
                    continue
                for lo, hi in RANGES:
                    np.testing.assert_array_equal(rd.read(lo, hi), full[name][lo:hi])
                served += 1
            assert served >= 30
    finally:
        os.close(fd)
