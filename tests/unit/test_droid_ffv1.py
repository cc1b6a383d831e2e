"""FFV1 depth video: bit-exact round trips (synthetic extremes and real sensor depth), the
original pipeline's byte-split BGR files, and failures that name the file."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from robocurate.droid import ffv1
from robocurate.io.atomic import atomic_write_json

REAL = Path(__file__).resolve().parent.parent / "data" / "depth-png-open3d"


def _frames(h, w, n, seed=0):
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 65536, (h, w), dtype=np.uint16) for _ in range(n)]
    frames[0][:] = 0
    frames[1][:] = 65535
    frames[2][0, 0], frames[2][-1, -1] = 0, 65535
    return frames


def _real_frames():
    frames = [np.array(Image.open(REAL / name)) for name in
              ("00000.png", "00001.png", "TUM_depth.png", "SUN_depth.png")]
    assert all(f.dtype == np.uint16 and f.shape == (480, 640) for f in frames)
    return frames


@pytest.mark.parametrize("h,w", [(17, 33), (1, 1), (48, 64), (31, 2)])
def test_gray16_round_trip_bit_exact(tmp_path, h, w):
    frames = _frames(h, w, 4)
    path = tmp_path / "depth.mkv"
    assert ffv1.write_depth_mkv(path, frames, fps=15.0) == 4
    info = ffv1.probe_depth(path)
    assert (info.kind, info.codec, info.pix_fmt) == (ffv1.KIND_GRAY16, "ffv1", "gray16le")
    assert (info.width, info.height, info.fps, info.frames) == (w, h, 15.0, 4)
    out = list(ffv1.read_depth_mm(path))
    assert len(out) == 4
    for a, b in zip(frames, out):
        assert b.dtype == np.uint16 and np.array_equal(a, b)


def test_real_depth_round_trip_bit_exact(tmp_path):
    frames = _real_frames()
    # Real sensor depth: a good share of invalid (0) pixels, TUM/SUN use the high byte.
    zero = [float((f == 0).mean()) for f in frames]
    assert all(0.1 < z < 0.25 for z in zero), zero
    assert max(int(f.max()) for f in frames) > 60000
    path = tmp_path / "real.mkv"
    ffv1.write_depth_mkv(path, frames, fps=30.0)
    out = list(ffv1.read_depth_mm(path))
    assert len(out) == len(frames)
    assert all(np.array_equal(a, b) for a, b in zip(frames, out))
    # Lossless but compressed: smaller than the raw frames.
    assert path.stat().st_size < sum(f.nbytes for f in frames)


def test_read_depth_metres_uses_scale(tmp_path):
    frames = _frames(8, 10, 3)
    path = tmp_path / "recordings" / "123" / "depth.mkv"
    ffv1.write_depth_mkv(path, frames)
    m = list(ffv1.read_depth(path))
    assert m[1].dtype == np.float32
    assert np.allclose(m[1], 65.535) and np.all(m[0] == 0)
    np.testing.assert_allclose(m[2], frames[2].astype(np.float32) / 1000.0, rtol=1e-6)
    # A sidecar saying another scale is honoured (value per metre).
    atomic_write_json(path.parent / "depth_meta.json", {"scale": 5000.0})
    np.testing.assert_allclose(next(iter(ffv1.read_depth(path)))[0, 0], 0.0)
    np.testing.assert_allclose(list(ffv1.read_depth(path))[1], 65535 / 5000.0, rtol=1e-6)


def test_byte_split_layout():
    mm = np.array([[0, 255, 256, 0x1234, 65535]], np.uint16)
    bgr = ffv1.split_bytes_bgr(mm)
    assert bgr[0, 3].tolist() == [0x34, 0x12, 0]  # B = low byte, G = high byte, R = 0
    assert bgr[0, 4].tolist() == [255, 255, 0]
    assert np.array_equal(ffv1.join_bytes_bgr(bgr), mm)


def test_metres_to_mm_matches_original_conversion():
    m = np.array([[np.nan, np.inf, -np.inf, -0.5, 1.2345, 70.0, 0.0999]], np.float32)
    assert ffv1.metres_to_mm(m).tolist() == [[0, 0, 0, 0, 1234, 65535, 99]]


def test_reads_original_bgr_split_files(tmp_path):
    real = _real_frames()
    extremes = np.zeros((480, 640), np.uint16)
    extremes[0, :4] = [255, 256, 0x1234, 65535]
    frames = real + [extremes]
    path = tmp_path / "recordings" / "222" / "depth.mkv"
    assert ffv1.write_original_bgr_split(path, frames, fps=30.0) == len(frames)
    # The file itself holds B = low byte, G = high byte, R = 0 (checked without our reader).
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "ffv1"
        first = next(c.decode(stream)).to_ndarray(format="bgr24")
    assert np.array_equal(first[..., 0], real[0] & 0xFF)
    assert np.array_equal(first[..., 1], real[0] >> 8)
    assert not first[..., 2].any()

    info = ffv1.probe_depth(path)
    assert info.kind == ffv1.KIND_BGR_SPLIT and info.frames == len(frames)
    out = list(ffv1.read_depth_mm(path))
    assert len(out) == len(frames) and all(np.array_equal(a, b) for a, b in zip(frames, out))
    # The original's sidecar (depth_scale: 1000) and depth_m = ((G << 8) | B) / 1000.
    atomic_write_json(path.parent / "depth_meta.json",
                      {"format": "ffv1_depth_z16", "encoding": "bgr_split_uint16", "depth_scale": 1000})
    metres = list(ffv1.read_depth(path))
    np.testing.assert_allclose(metres[-1][0, :4], [0.255, 0.256, 0x1234 / 1000, 65.535], rtol=1e-6)


def test_bgr_with_red_channel_is_not_depth(tmp_path):
    import cv2

    path = tmp_path / "colour.mkv"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 30.0, (16, 8), True)
    w.write(np.full((8, 16, 3), 77, np.uint8))
    w.release()
    with pytest.raises(ffv1.DepthVideoError, match="R channel"):
        list(ffv1.read_depth_mm(path))


def test_failures_name_the_file(tmp_path):
    with pytest.raises(ffv1.DepthVideoError, match="not found"):
        ffv1.probe_depth(tmp_path / "missing.mkv")
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(b"\x00not a video" * 50)
    with pytest.raises(ffv1.DepthVideoError) as err:
        list(ffv1.read_depth(junk))
    assert str(junk) in str(err.value)
    # An H.264 video is not lossless depth.
    from robocurate.io.video import write_mp4
    mp4 = tmp_path / "rgb.mp4"
    write_mp4(mp4, [np.zeros((16, 16, 3), np.uint8)] * 2, fps=15)
    with pytest.raises(ffv1.DepthVideoError, match="not FFV1"):
        ffv1.probe_depth(mp4)


def test_truncated_file_is_not_silently_short(tmp_path):
    frames = _frames(64, 80, 10)
    path = tmp_path / "depth.mkv"
    ffv1.write_depth_mkv(path, frames)
    data = path.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ffv1.DepthVideoError, match="truncated|decode failed|cannot open"):
        list(ffv1.read_depth_mm(cut))


def test_writer_is_atomic(tmp_path):
    target = tmp_path / "d" / "depth.mkv"
    with pytest.raises(RuntimeError):
        with ffv1.DepthWriter(target, 8, 4, 15.0) as w:
            w.write(np.zeros((4, 8), np.uint16))
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []
    with ffv1.DepthWriter(target, 8, 4, 15.0) as w:
        with pytest.raises(ValueError):
            w.write(np.zeros((4, 8), np.float32))
        with pytest.raises(ValueError):
            w.write(np.zeros((5, 8), np.uint16))
        w.write(np.ones((4, 8), np.uint16))
    assert [f.name for f in target.parent.iterdir()] == ["depth.mkv"]
    assert len(list(ffv1.read_depth_mm(target))) == 1
    with pytest.raises(ValueError):
        ffv1.write_depth_mkv(tmp_path / "empty.mkv", [])
    assert not (tmp_path / "empty.mkv").exists()
