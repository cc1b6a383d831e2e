"""robocurate.io.video: MP4 writing, frame counting, random-access decoding, depth codes."""

from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np
import pytest

from robocurate.io import video as V
from robocurate.io.video import (
    VideoError,
    count_frames,
    decode_depth_codes,
    decode_frames_at,
    encode_depth_codes,
    frames_to_check_indices,
    write_depth_mp4,
    write_mp4,
)

H, W = 48, 64

# Pure primaries first so a swapped channel order cannot go unnoticed.
PRIMARIES = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 0, 0), (255, 255, 255)]


def _colours(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, 256, (n, 3)).astype(np.uint8)
    k = min(n, len(PRIMARIES))
    cols[:k] = PRIMARIES[:k]
    return cols


def _solid(cols: np.ndarray, h: int = H, w: int = W):
    for c in cols:
        frame = np.empty((h, w, 3), dtype=np.uint8)
        frame[:] = c
        yield frame


def _assert_colour(frame: np.ndarray, colour, tol: int = 6) -> None:
    assert frame.shape == (H, W, 3) and frame.dtype == np.uint8
    err = np.abs(frame.astype(int) - np.asarray(colour, dtype=int)).max()
    assert err <= tol, f"expected {tuple(colour)}, got mean {frame.reshape(-1, 3).mean(0)}"


def _no_temp_files(directory) -> bool:
    return not [p for p in os.listdir(directory) if p.startswith(".")]


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("kwargs", [
    {},  # x264 defaults: B-frames, one long GOP
    {"gop": 7, "options": {"bf": "3", "b-pyramid": "normal"}},  # many GOPs, B-pyramid
    {"preset": "ultrafast"},  # no B-frames
])
def test_solid_colour_round_trip(tmp_path, kwargs):
    cols = _colours(40)
    path = tmp_path / "solid.mp4"
    assert write_mp4(path, _solid(cols), fps=15, **kwargs) == len(cols)
    assert count_frames(path) == len(cols)
    wanted = [39, 0, 5, 17, 17, 2, 38, 1]  # any order, duplicates allowed
    frames = decode_frames_at(path, wanted)
    assert len(frames) == len(wanted)
    for i, frame in zip(wanted, frames):
        _assert_colour(frame, cols[i])
    # Frame 0 is pure red: R high, G and B low (catches an RGB/BGR swap).
    red = decode_frames_at(path, [0])[0].reshape(-1, 3).mean(0)
    assert red[0] > 240 and red[1] < 15 and red[2] < 15


def test_every_frame_is_the_ith_frame_lossless(tmp_path):
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(30)]
    path = tmp_path / "lossless.mp4"
    write_mp4(path, iter(frames), codec="libx264rgb", pix_fmt="rgb24", crf=0, gop=4,
              options={"bf": "2"})
    order = list(range(30))[::-1]
    for i, got in zip(order, decode_frames_at(path, order)):
        np.testing.assert_array_equal(got, frames[i])


def _barcoded(n: int, h: int = 96, w: int = 128):
    """Smoothly moving content (so x264 really uses B-frames) with the frame number
    written as a row of 8 black/white 8x8 blocks."""
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        frame = np.empty((h, w, 3), dtype=np.uint8)
        frame[..., 0] = (xx + 2 * i) % 256
        frame[..., 1] = (yy * 2 + i) % 256
        frame[..., 2] = 128
        for bit in range(8):
            frame[h - 8:, bit * 8:(bit + 1) * 8] = 255 if (i >> bit) & 1 else 0
        yield frame


def _read_barcode(frame: np.ndarray) -> int:
    h = frame.shape[0]
    bits = [frame[h - 6:h - 2, b * 8 + 2:b * 8 + 6].mean() > 128 for b in range(8)]
    return sum(1 << b for b, on in enumerate(bits) if on)


@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize("kwargs", [{}, {"gop": 12, "options": {"bf": "3", "b-pyramid": "normal"}}])
def test_b_frames_decode_to_the_right_index(tmp_path, monkeypatch, cache, kwargs):
    path = tmp_path / "moving.mp4"
    write_mp4(path, _barcoded(90), **kwargs)
    with av.open(str(path)) as c:
        pts = [p.pts for p in c.demux(c.streams.video[0]) if p.size]
    assert pts != sorted(pts), "expected B-frames (decode order != presentation order)"
    if not cache:
        monkeypatch.setattr(V, "_PACKET_CACHE_LIMIT", 0)
    wanted = [89, 0, 44, 45, 1, 2, 3, 60, 60, 13]
    assert [_read_barcode(f) for f in decode_frames_at(path, wanted)] == wanted
    assert [_read_barcode(f) for f in decode_frames_at(path, range(90))] == list(range(90))


def test_seek_path_without_packet_cache(tmp_path, monkeypatch):
    cols = _colours(60, seed=3)
    path = tmp_path / "seek.mp4"
    write_mp4(path, _solid(cols), gop=8, options={"bf": "3"})
    monkeypatch.setattr(V, "_PACKET_CACHE_LIMIT", 0)
    wanted = [59, 3, 31, 32, 8, 0]
    for i, frame in zip(wanted, decode_frames_at(path, wanted)):
        _assert_colour(frame, cols[i])


def test_fractional_fps_and_numpy_indices(tmp_path):
    cols = _colours(10)
    path = tmp_path / "ntsc.mp4"
    write_mp4(path, _solid(cols), fps=Fraction(30000, 1001), preset="ultrafast")
    with av.open(str(path)) as c:
        assert abs(float(c.streams.video[0].average_rate) - 29.97) < 0.01
    idx = np.array([9, 4])
    for i, frame in zip(idx, decode_frames_at(path, idx)):
        _assert_colour(frame, cols[i])


def test_streaming_generator_is_consumed_once(tmp_path):
    pulled = []

    def gen():
        for i, f in enumerate(_solid(_colours(12))):
            pulled.append(i)
            yield f

    write_mp4(tmp_path / "g.mp4", gen(), preset="ultrafast")
    assert pulled == list(range(12))


# --------------------------------------------------------------------------- writer errors


def test_write_atomic_and_overwrites(tmp_path):
    path = tmp_path / "a.mp4"
    write_mp4(path, _solid(_colours(5)), preset="ultrafast")
    write_mp4(path, _solid(_colours(9)), preset="ultrafast")
    assert count_frames(path) == 9
    assert _no_temp_files(tmp_path)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


@pytest.mark.parametrize("frames, needle", [
    ([], "no frames"),
    ([np.zeros((H, W, 3), np.uint8), np.zeros((H + 2, W, 3), np.uint8)], "differs"),
    ([np.zeros((H, W, 3), np.float32)], "uint8"),
    ([np.zeros((H, W), np.uint8)], "HxWx3"),
])
def test_write_rejects_bad_frames_and_leaves_nothing(tmp_path, frames, needle):
    path = tmp_path / "bad.mp4"
    with pytest.raises(VideoError) as err:
        write_mp4(path, iter(frames))
    assert str(path) in str(err.value) and needle in str(err.value)
    assert not path.exists() and _no_temp_files(tmp_path)


def test_write_encoder_failure_is_video_error(tmp_path):
    path = tmp_path / "odd.mp4"  # yuv420p needs even dimensions
    with pytest.raises(VideoError, match="odd.mp4"):
        write_mp4(path, _solid(_colours(3), h=45, w=63))
    assert not path.exists() and _no_temp_files(tmp_path)


def test_write_into_missing_directory(tmp_path):
    with pytest.raises(VideoError, match="does not exist"):
        write_mp4(tmp_path / "nope" / "a.mp4", _solid(_colours(2)))


# --------------------------------------------------------------------------- reader errors


def test_missing_file(tmp_path):
    path = tmp_path / "missing.mp4"
    for fn in (lambda: count_frames(path), lambda: decode_frames_at(path, [0])):
        with pytest.raises(VideoError) as err:
            fn()
        assert str(path) in str(err.value) and "does not exist" in str(err.value)


@pytest.mark.parametrize("content", [b"", b"not a video at all\n" * 50,
                                     bytes(range(256)) * 40])
def test_garbage_file(tmp_path, content):
    path = tmp_path / "garbage.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError) as err:
        count_frames(path)
    assert str(path) in str(err.value)
    with pytest.raises(VideoError, match="garbage.mp4"):
        decode_frames_at(path, [0])


def test_directory_is_not_a_video(tmp_path):
    with pytest.raises(VideoError, match="not a regular file"):
        count_frames(tmp_path)


def test_truncated_mp4_cannot_be_opened(tmp_path):
    path = tmp_path / "cut.mp4"
    write_mp4(path, _solid(_colours(20)), preset="ultrafast")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])  # the moov atom is at the end
    with pytest.raises(VideoError, match="cut.mp4"):
        count_frames(path)


def test_zeroed_payload_counts_but_does_not_decode(tmp_path):
    path = tmp_path / "zeroed.mp4"
    write_mp4(path, _solid(_colours(20)), preset="ultrafast")
    raw = bytearray(path.read_bytes())
    i = raw.find(b"mdat")
    size = int.from_bytes(raw[i - 4:i], "big")
    raw[i + 4:i - 4 + size] = bytes(size - 8)
    path.write_bytes(bytes(raw))
    assert count_frames(path) == 20  # the index is intact ...
    with pytest.raises(VideoError, match="zeroed.mp4"):
        decode_frames_at(path, frames_to_check_indices(20, 3))  # ... the data is not


def test_no_video_stream(tmp_path):
    path = tmp_path / "audio.m4a"
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000)
        samples = np.zeros((1, 1024), dtype=np.float32)
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 16000
            frame.pts = i * 1024
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    with pytest.raises(VideoError, match="no video stream"):
        count_frames(path)


def test_index_out_of_range(tmp_path):
    path = tmp_path / "short.mp4"
    write_mp4(path, _solid(_colours(5)), preset="ultrafast")
    with pytest.raises(VideoError, match="out of range"):
        decode_frames_at(path, [0, 5])
    with pytest.raises(VideoError, match="out of range"):
        decode_frames_at(path, [-1])
    assert decode_frames_at(path, []) == []


# --------------------------------------------------------------------------- sampling rule


@pytest.mark.parametrize("n, k, expected", [
    (80, 3, [0, 40, 79]),
    (41, 3, [0, 20, 40]),
    (2, 3, [0, 1]),  # round(0.5) == 0: deduplicated, not [0, 0, 1]
    (1, 3, [0]),
    (0, 3, []),
    (10, 0, []),
    (5, 5, [0, 1, 2, 3, 4]),
])
def test_frames_to_check_indices(n, k, expected):
    got = frames_to_check_indices(n, k)
    assert got == expected and all(type(i) is int for i in got)


# --------------------------------------------------------------------------- depth


def _reference_codes(d: np.ndarray) -> np.ndarray:
    """The reference formula, written out independently."""
    out = np.zeros(d.shape, dtype=np.int64)
    for idx, v in np.ndenumerate(d):
        if np.isfinite(v) and 0.05 <= v <= 0.55:
            out[idx] = int((v - 0.05) / 0.5 * 65534.0 + 1.0)
    return out


def test_depth_codes_match_reference_and_round_trip():
    rng = np.random.default_rng(0)
    d = rng.uniform(0.0, 0.7, (20, 30))
    d[0, :6] = [0.05, 0.55, 0.0499999, 0.5500001, np.nan, np.inf]
    rgb = encode_depth_codes(d)
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    assert not rgb[..., 2].any()
    codes = rgb[..., 0].astype(np.int64) * 256 + rgb[..., 1]
    np.testing.assert_array_equal(codes, _reference_codes(d))
    assert codes[0, 0] == 1 and codes[0, 1] == 65535 and not codes[0, 2:6].any()

    back = decode_depth_codes(rgb)
    assert back.dtype == np.float32
    valid = codes > 0
    assert np.all(back[~valid] == 0.0)
    assert np.abs(back[valid] - d[valid]).max() <= 0.5 / 65534 + 1e-6  # one code step


def test_depth_codes_float32_input():
    d = np.linspace(0.05, 0.55, 1000, dtype=np.float32).reshape(10, 100)
    codes = encode_depth_codes(d)
    assert (codes[..., 0].astype(int) * 256 + codes[..., 1]).min() >= 1


def test_depth_mp4(tmp_path):
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    frames = [0.2 + 0.2 * yy / H + 0.05 * xx / W + 0.003 * t for t in range(12)]
    frames[0][:4] = 0.9  # out of range: encoded invalid
    path = tmp_path / "depth.mp4"
    assert write_depth_mp4(path, iter(frames)) == 12
    assert count_frames(path) == 12
    with av.open(str(path)) as c:
        cc = c.streams.video[0].codec_context
        assert cc.name == "h264" and c.streams.video[0].format.name in ("gbrp", "rgb24", "bgr0")
    got = decode_frames_at(path, [0, 11])
    for t, rgb in zip([0, 11], got):
        assert rgb[..., 2].mean() < 5  # B stays ~0 through rgb24 (no chroma subsampling)
        depth = decode_depth_codes(rgb)
        ok = (frames[t] >= 0.05) & (frames[t] <= 0.55)
        # CRF 23 is lossy in the low byte; the high byte keeps depth within millimetres.
        assert np.median(np.abs(depth[ok] - frames[t][ok])) < 0.005
