"""robocurate.react.compress: streamed, parallel, crash-safe GZIP+shuffle rewrite of BLOSC recordings."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest

from robocurate.io.h5safe import H5VerificationError, temp_path_for
from robocurate.react import compress as rc
from robocurate.react.compress import compress_file

T, H, W = 7, 12, 16


def _blosc() -> dict:
    return dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))


def _make_source(path: Path) -> Path:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W]
    frames = ((xx[None, :, :, None] * 8 + yy[None, :, :, None] * 3 + np.arange(T)[:, None, None, None] * 5) % 256
              + rng.integers(0, 4, (T, H, W, 3))).astype(np.uint8)
    with h5py.File(path, "w") as f:
        f.attrs["task"] = "pick cube"
        f.attrs["fps"] = np.float32(30.0)
        f.attrs["ids"] = np.arange(3, dtype=np.int64)
        obs = f.create_group("observations")
        obs.attrs["note"] = "nested"
        cams = obs.create_group("images")
        for cam in ("front", "wrist"):
            d = cams.create_dataset(cam, data=frames, chunks=(1, H, W, 3), **_blosc())
            d.attrs["encoding"] = "rgb"
        depth = (rng.integers(0, 4000, (T, H, W))).astype(np.uint16)
        cams.create_dataset("depth", data=depth, chunks=(2, H, W), **_blosc())  # 7 % 2: edge chunk
        gs = f.create_group("tactile/gelsight_left")
        gs.attrs["sensor"] = "gelsight mini"
        gs.create_dataset("frames", data=frames[:, ::-1], chunks=(1, H, W, 3), **_blosc())
        poses = f.create_dataset("poses", data=rng.standard_normal((T, 7)))  # contiguous float64
        poses.attrs["frame"] = "base"
        f.create_dataset("ot_empty", shape=(0, 7), maxshape=(None, 7), chunks=(64, 7), dtype=np.float64, **_blosc())
        f.create_dataset("episode_index", data=np.int64(42))
        f.create_dataset("language", data="pick up the red cube", dtype=h5py.string_dtype())
    return path


def _snapshot(path: Path) -> dict:
    out = {}
    with h5py.File(path, "r") as f:
        def grab(name, obj):
            attrs = {k: (np.asarray(v).tobytes(), np.asarray(v).dtype.str) if not isinstance(v, str) else v
                     for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Dataset):
                val = obj[()]
                out[name] = ("d", obj.shape, obj.dtype.str, val.tobytes() if isinstance(val, np.ndarray) else val, attrs)
            else:
                out[name] = ("g", attrs)
        f.visititems(grab)
        out["/"] = {k: np.asarray(v).tobytes() for k, v in f.attrs.items()}
    return out


def test_compress_preserves_everything_and_applies_gzip_shuffle(tmp_path):
    src = _make_source(tmp_path / "ep.h5")
    before = _snapshot(src)
    with h5py.File(src, "r") as f:
        chunks_before = {n: f[n].chunks for n in ("observations/images/front", "observations/images/depth",
                                                  "tactile/gelsight_left/frames")}
    res = compress_file(src, level=4, workers=2)
    assert res["status"] == "compressed"
    assert res["datasets"] == 8
    assert res["bytes_after"] == src.stat().st_size
    assert _snapshot(src) == before
    assert not temp_path_for(src).exists()
    with h5py.File(src, "r") as f:
        assert f.attrs["task"] == "pick cube"
        for name, ch in chunks_before.items():
            d = f[name]
            assert d.chunks == ch
            assert d.compression == "gzip" and d.compression_opts == 4 and d.shuffle
        poses = f["poses"]
        assert poses.chunks == (1, 7) and poses.compression == "gzip" and poses.shuffle
        assert f["ot_empty"].chunks == (1, 7) and f["ot_empty"].shape == (0, 7)
        assert f["episode_index"].chunks is None and f["episode_index"][()] == 42
        assert f["language"][()].decode() == "pick up the red cube"


def test_direct_chunks_decode_like_hdf5_filters(tmp_path):
    # Our hand-made shuffle+deflate chunks must equal what HDF5 itself would read back.
    p = tmp_path / "x.h5"
    data = np.random.default_rng(1).integers(0, 60000, (5, 9, 3)).astype(np.uint16)
    with h5py.File(p, "w") as f:
        f.create_dataset("a", data=data, chunks=(2, 9, 3), **_blosc())
        f.create_dataset("b", data=data.astype(np.float32) / 7, chunks=(3, 4, 3), **_blosc())
    compress_file(p, level=6, workers=3)
    with h5py.File(p, "r") as f:
        np.testing.assert_array_equal(f["a"][()], data)
        np.testing.assert_array_equal(f["b"][()], data.astype(np.float32) / 7)
        assert f["b"].compression_opts == 6


def test_second_run_writes_nothing(tmp_path):
    src = _make_source(tmp_path / "ep.h5")
    compress_file(src)
    st = src.stat()
    res = compress_file(src)
    assert res["status"] == "already_compressed"
    st2 = src.stat()
    assert (st2.st_ino, st2.st_mtime_ns, st2.st_size) == (st.st_ino, st.st_mtime_ns, st.st_size)
    # A different level is not "already compressed".
    assert compress_file(src, level=5)["status"] == "compressed"


def test_verification_failure_leaves_source_untouched(tmp_path, monkeypatch):
    src = _make_source(tmp_path / "ep.h5")
    raw = src.read_bytes()

    def boom(original, new, *args):
        assert Path(new).exists()
        raise H5VerificationError("forced")

    monkeypatch.setattr(rc, "_verify", boom)
    with pytest.raises(H5VerificationError):
        compress_file(src)
    assert src.read_bytes() == raw
    assert not temp_path_for(src).exists()
    assert sorted(os.listdir(tmp_path)) == ["ep.h5"]


def test_real_verifier_catches_corruption(tmp_path, monkeypatch):
    src = _make_source(tmp_path / "ep.h5")
    raw = src.read_bytes()
    real_encode = rc._encode_chunk

    def bad_encode(block, chunks, itemsize, level):
        block = np.array(block)
        block.reshape(-1).view(np.uint8)[0] ^= 1  # one flipped bit per chunk
        return real_encode(block, chunks, itemsize, level)

    monkeypatch.setattr(rc, "_encode_chunk", bad_encode)
    with pytest.raises(H5VerificationError):
        compress_file(src)
    assert src.read_bytes() == raw
    assert not temp_path_for(src).exists()


def test_stale_temp_is_removed(tmp_path):
    src = _make_source(tmp_path / "ep.h5")
    stale = temp_path_for(src)
    stale.write_bytes(b"half written by a killed run")
    assert compress_file(src)["status"] == "compressed"
    assert not stale.exists()
    with h5py.File(src, "r") as f:
        assert f["observations/images/front"].compression == "gzip"


def test_unreadable_file_raises_oserror_with_path(tmp_path):
    bad = tmp_path / "not.h5"
    bad.write_bytes(b"nope")
    with pytest.raises(OSError, match="not.h5"):
        compress_file(bad)
    with pytest.raises(OSError, match="missing.h5"):
        compress_file(tmp_path / "missing.h5")


def test_output_is_no_bigger_than_hdf5s_own_rewrite_with_the_same_chunks(tmp_path):
    """Same chunks, same deflate bytes: what is left is metadata, and the 1.10 chunk
    indexes (fixed/extensible arrays) are smaller than the B-trees HDF5 writes by default
    (what h5repack produces)."""
    src = _make_source(tmp_path / "ep.h5")
    ref = tmp_path / "ref.h5"
    with h5py.File(src, "r") as fi, h5py.File(ref, "w") as fo:
        def copy(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.ndim > 0:
                fo.create_dataset(name, data=obj[()], chunks=rc._target_chunks(obj),
                                  maxshape=obj.maxshape if obj.chunks else None,
                                  compression="gzip", compression_opts=4, shuffle=True)
        fi.visititems(copy)
    compress_file(src)
    assert os.path.getsize(src) <= os.path.getsize(ref)
    with open(src, "rb") as fh:
        assert fh.read(9)[8] >= 2  # superblock version of the 1.10 file format


def test_verifier_catches_one_bad_chunk_past_the_first(tmp_path, monkeypatch):
    import itertools

    src = _make_source(tmp_path / "ep.h5")
    raw = src.read_bytes()
    real_encode = rc._encode_chunk
    calls = itertools.count()

    def one_bad(block, chunks, itemsize, level):
        if next(calls) == 3:  # a later chunk of the first dataset: HDF5's spot check passes
            block = np.array(block)
            block.reshape(-1).view(np.uint8)[-1] ^= 0x80
        return real_encode(block, chunks, itemsize, level)

    monkeypatch.setattr(rc, "_encode_chunk", one_bad)
    with pytest.raises(H5VerificationError, match="values differ"):
        compress_file(src)
    assert src.read_bytes() == raw


def test_chunk_decoder_is_the_inverse_of_the_encoder():
    rng = np.random.default_rng(2)
    for dtype, chunks, shape in ((np.uint16, (2, 5, 3), (1, 5, 3)), (np.float64, (4, 7), (4, 7)),
                                 (np.uint8, (1, 6, 6, 3), (1, 6, 6, 3))):
        block = (rng.standard_normal(shape) * 1000).astype(dtype)
        raw = rc._encode_chunk(block, chunks, np.dtype(dtype).itemsize, 4)
        assert rc._chunk_decodes_to(raw, block, chunks, np.dtype(dtype).itemsize)
        other = block.copy()
        other.reshape(-1).view(np.uint8)[0] ^= 1
        assert not rc._chunk_decodes_to(raw, other, chunks, np.dtype(dtype).itemsize)
        assert not rc._chunk_decodes_to(raw[:-5], block, chunks, np.dtype(dtype).itemsize)
