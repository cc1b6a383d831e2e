"""MP4 reading and writing for robot-data curation, built on PyAV.

Pure library: no Prefect, no logging configuration. Every failure that comes from
the file itself (missing, unreadable, undecodable, wrong shape) surfaces as
:class:`VideoError`, whose message names the path, so a validator can turn it into
an "invalid trajectory" verdict without knowing anything about FFmpeg's exceptions.

Frame indexing convention: frame ``i`` is the ``i``-th frame in *presentation*
order, i.e. the ``i``-th frame a decoder yields when decoding from the start. With
B-frames, decode order differs from presentation order, so indices are resolved
through packet timestamps (the ``i``-th smallest pts), never by counting packets.
"""

from __future__ import annotations

import bisect
import os
import tempfile
import threading
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

__all__ = [
    "DEPTH_MAX_M",
    "DEPTH_MIN_M",
    "VideoError",
    "count_frames",
    "decode_depth_codes",
    "decode_frames_at",
    "encode_depth_codes",
    "frames_to_check_indices",
    "write_depth_mp4",
    "write_mp4",
]

# MolmoSpaces depth encoding (molmo_spaces/utils/depth_utils.py): 16-bit codes in
# R (high byte) and G (low byte); [0.05, 0.55] m -> [1, 65535]; 0 = invalid.
DEPTH_MIN_M = 0.05
DEPTH_MAX_M = 0.55
_DEPTH_CODEC = "libx264rgb"
_DEPTH_PIX_FMT = "rgb24"
_DEPTH_CRF = 23

# Above this many compressed bytes, decode_frames_at stops caching demuxed packets
# and seeks in the container instead, so a long video cannot blow up memory.
_PACKET_CACHE_LIMIT = 64 * 1024 * 1024

_READ_ERRORS = (av.error.FFmpegError, OSError, ValueError, RuntimeError, EOFError)

# Converting a fresh frame with frame.to_ndarray(format=...) builds a new swscale
# context each time (~0.5 ms, more than decoding a small frame); a long-lived
# reformatter reuses it. One per thread because the context is not thread-safe.
_local = threading.local()


def _to_rgb(frame) -> np.ndarray:
    reformatter = getattr(_local, "reformatter", None)
    if reformatter is None:
        reformatter = _local.reformatter = VideoReformatter()
    return reformatter.reformat(frame, format="rgb24").to_ndarray()


class VideoError(Exception):
    """A video file is missing, unreadable, undecodable or not what was asked for."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


# --------------------------------------------------------------------------- writing


def write_mp4(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: int | float | Fraction = 15,
    *,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    gop: int | None = None,
    crf: int | float | None = None,
    preset: str | None = None,
    options: dict[str, str] | None = None,
) -> int:
    """Encode ``frames`` (HxWx3 uint8 RGB arrays) into an MP4 at ``path``.

    Frames are encoded as they are pulled from the iterable, so a generator keeps
    memory flat. The file appears atomically: it is written under a temporary name
    in the same directory and renamed into place only once the encoder has been
    drained, so a crash never leaves a half-written MP4 under the final name.

    ``preset`` and ``options`` are passed to the encoder (e.g. ``preset="ultrafast"``
    for throwaway sample data). Returns the number of frames written, which equals
    the number of frames a decoder will report.
    """
    path = Path(path)
    rate = _as_rate(path, fps)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise VideoError(path, f"parent directory {directory} does not exist")

    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    n_written = 0
    try:
        # The temp name has no .mp4 suffix, so the muxer must be named explicitly.
        with av.open(tmp_name, mode="w", format="mp4") as container:
            stream = None
            shape = None
            for frame_arr in frames:
                arr = _check_rgb_frame(path, frame_arr, n_written, shape)
                if stream is None:
                    shape = arr.shape
                    stream = _add_video_stream(
                        container, codec, rate, arr.shape[1], arr.shape[0], pix_fmt, gop, crf,
                        preset, options,
                    )
                frame = _to_video_frame(arr, pix_fmt)
                frame.pts = n_written
                container.mux(stream.encode(frame))
                n_written += 1
            if stream is None:
                raise VideoError(path, "no frames to write (an MP4 needs at least one frame)")
            # Without draining, frames still held for B-frame reordering / lookahead
            # would be lost and the decoded frame count would fall short.
            container.mux(stream.encode(None))
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; a video is meant to be shared
        os.replace(tmp_name, path)
    except VideoError:
        _unlink_quietly(tmp_name)
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        _unlink_quietly(tmp_name)
        raise VideoError(path, f"encoding with {codec}/{pix_fmt} failed: {exc}") from exc
    except BaseException:
        _unlink_quietly(tmp_name)
        raise
    return n_written


def write_depth_mp4(
    path: str | os.PathLike,
    depth_m_frames: Iterable[np.ndarray],
    fps: int | float | Fraction = 15,
    *,
    preset: str | None = None,
    options: dict[str, str] | None = None,
) -> int:
    """Write metric depth frames (HxW float, metres) as a MolmoSpaces depth MP4.

    Uses the reference settings (``libx264rgb``, ``rgb24``, CRF 23) so files are
    byte-compatible in kind with real generated data. Note CRF 23 is lossy: the low
    byte (G) does not survive exactly, the high byte (R) nearly does.
    """
    return write_mp4(
        path,
        (encode_depth_codes(d) for d in depth_m_frames),
        fps,
        codec=_DEPTH_CODEC,
        pix_fmt=_DEPTH_PIX_FMT,
        crf=_DEPTH_CRF,
        preset=preset,
        options=options,
    )


def encode_depth_codes(depth_m: np.ndarray) -> np.ndarray:
    """HxW depth in metres -> HxWx3 uint8 (R = code >> 8, G = code & 0xFF, B = 0).

    Matches the reference exactly, truncation included: out-of-range and non-finite
    pixels become code 0 rather than being clipped, so ``depth > 0`` masks valid data.
    """
    d = np.asarray(depth_m)
    if d.ndim != 2:
        raise ValueError(f"depth frame must be HxW, got shape {d.shape}")
    if d.dtype not in (np.float32, np.float64):
        d = d.astype(np.float64)
    # Arithmetic stays in the input's float type (Python scalars are "weak" under
    # NumPy 2), as in the reference, so float32 depth gives the reference's codes.
    with np.errstate(invalid="ignore"):
        valid = (d >= DEPTH_MIN_M) & (d <= DEPTH_MAX_M)
    norm = (np.where(valid, d, DEPTH_MIN_M) - DEPTH_MIN_M) / (DEPTH_MAX_M - DEPTH_MIN_M)
    codes = np.where(valid, (norm * 65534.0 + 1.0).astype(np.uint16), np.uint16(0))
    out = np.zeros(d.shape + (3,), dtype=np.uint8)
    out[..., 0] = codes >> 8
    out[..., 1] = codes & 0xFF
    return out


def decode_depth_codes(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 depth-coded frame -> HxW float32 metres, 0.0 where invalid."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 2:
        raise ValueError(f"depth-coded frame must be HxWx3, got shape {rgb.shape}")
    codes = rgb[..., 0].astype(np.uint32) * 256 + rgb[..., 1].astype(np.uint32)
    depth = (codes.astype(np.float32) - 1.0) / 65534.0 * np.float32(
        DEPTH_MAX_M - DEPTH_MIN_M
    ) + np.float32(DEPTH_MIN_M)
    return np.where(codes > 0, depth, np.float32(0.0)).astype(np.float32)


# --------------------------------------------------------------------------- reading


def count_frames(path: str | os.PathLike) -> int:
    """Number of frames in the first video stream, by demuxing (not decoding) packets."""
    path = Path(path)
    _require_file(path)
    try:
        with av.open(str(path), mode="r") as container:
            stream = _first_video_stream(container, path)
            n = 0
            for packet in container.demux(stream):
                # demux() ends with an empty flush packet per stream; it is not a frame.
                if packet.size:
                    n += 1
    except VideoError:
        raise
    except _READ_ERRORS as exc:
        raise VideoError(path, f"cannot demux video: {exc}") from exc
    return n


def decode_frames_at(path: str | os.PathLike, indices: Sequence[int]) -> list[np.ndarray]:
    """Decode the frames at 0-based ``indices`` as HxWx3 uint8 RGB arrays.

    Results come back in the order of ``indices`` (duplicates allowed). Each target
    is reached by decoding forward from the last keyframe at or before it; targets
    sharing a GOP are served by one forward pass, so for short videos with a single
    keyframe the cost is one decode of the prefix up to the last target.
    """
    path = Path(path)
    wanted = [_as_index(path, i) for i in indices]
    if not wanted:
        return []
    _require_file(path)
    try:
        with av.open(str(path), mode="r") as container:
            stream = _first_video_stream(container, path)
            return _decode_at(container, stream, path, wanted)
    except VideoError:
        raise
    except _READ_ERRORS as exc:
        raise VideoError(path, f"decoding failed: {exc}") from exc


def frames_to_check_indices(n_frames: int, k: int) -> list[int]:
    """The validator's sample: ``round(linspace(0, n-1, k))``, deduplicated, in order."""
    if n_frames <= 0 or k <= 0:
        return []
    raw = np.round(np.linspace(0, n_frames - 1, k)).astype(int)
    return list(dict.fromkeys(int(i) for i in raw))


# --------------------------------------------------------------------------- internals


def _decode_at(container, stream, path: Path, wanted: list[int]) -> list[np.ndarray]:
    # One demux pass gives decode-order pts/keyframe flags (and, for small files,
    # the packets themselves, so decoding needs no second read or seek).
    pts: list[int | None] = []
    keyframe: list[bool] = []
    packets: list | None = []
    cached_bytes = 0
    for packet in container.demux(stream):
        if not packet.size:
            continue
        pts.append(packet.pts)
        keyframe.append(bool(packet.is_keyframe))
        if packets is not None:
            cached_bytes += packet.size
            if cached_bytes > _PACKET_CACHE_LIMIT:
                packets = None
            else:
                packets.append(packet)

    n = len(pts)
    for i in wanted:
        if i >= n:
            raise VideoError(path, f"frame index {i} out of range (video has {n} frames)")

    targets = sorted(set(wanted))
    if packets is None:
        found = _decode_by_seeking(container, stream, path, targets, pts, keyframe)
    elif any(p is None for p in pts) or len(set(pts)) != n:
        # Without usable timestamps presentation order can only be recovered by
        # counting decoder output from the very first packet.
        found = _decode_sequential(stream, path, packets, targets)
    else:
        found = _decode_from_cache(stream, path, packets, targets, pts, keyframe)
    return [found[i] for i in wanted]


def _plan(targets: list[int], pts: list[int], keyframe: list[bool]):
    """Map each target frame to (pts, decode position of the keyframe to start from)."""
    sorted_pts = sorted(pts)
    decode_pos = {p: d for d, p in enumerate(pts)}
    key_positions = [d for d, k in enumerate(keyframe) if k]
    if not key_positions or key_positions[0] != 0:
        # A stream that does not start on a flagged keyframe is only safely
        # decodable from its first packet.
        key_positions = [0] + [d for d in key_positions if d != 0]
    plan = []
    for idx in targets:
        p = sorted_pts[idx]
        d = decode_pos[p]
        # Last keyframe at or before the target in decode order whose pts does not
        # exceed the target's (open-GOP leading frames need the previous GOP).
        j = bisect.bisect_right(key_positions, d) - 1
        while j > 0 and pts[key_positions[j]] is not None and pts[key_positions[j]] > p:
            j -= 1
        plan.append((idx, p, key_positions[max(j, 0)]))
    plan.sort(key=lambda t: (t[2], t[1]))
    return plan, {p: i for i, p in enumerate(sorted_pts)}


def _decode_from_cache(stream, path, packets, targets, pts, keyframe):
    cc = stream.codec_context
    plan, index_of_pts = _plan(targets, pts, keyframe)
    pending = {p: idx for idx, p, _ in plan}
    found: dict[int, np.ndarray] = {}
    pos = None  # decode position of the next packet to feed, None before the first run
    for _idx, p, start in plan:
        if p not in pending:
            continue
        if pos is None or start >= pos:
            # The needed keyframe is ahead of (or we have not started) the current
            # pass: restart there instead of decoding the frames in between.
            if pos is not None:
                cc.flush_buffers()
            pos = start
        while p in pending:
            if pos < len(packets):
                # Non-reference frames nobody asked for can be skipped outright: no
                # other frame depends on them, and they are a large share of a
                # B-frame stream. Toggled per packet, so a wanted one is still decoded.
                cc.skip_frame = "DEFAULT" if pts[pos] in pending else "NONREF"
                frames = cc.decode(packets[pos])
                pos += 1
            elif pos == len(packets):
                frames = cc.decode(None)  # drain frames held back for reordering
                pos += 1
            else:
                break
            _collect(frames, pending, found, index_of_pts)
        if p in pending:
            raise VideoError(path, f"decoder produced no frame for index {pending[p]}")
    return found


def _decode_by_seeking(container, stream, path, targets, pts, keyframe):
    if any(p is None for p in pts):
        container.seek(0, stream=stream)
        return _decode_sequential(stream, path, container.demux(stream), targets)
    cc = stream.codec_context
    plan, index_of_pts = _plan(targets, pts, keyframe)
    pending = {p: idx for idx, p, _ in plan}
    found: dict[int, np.ndarray] = {}
    for _idx, p, start in plan:
        if p not in pending:
            continue
        container.seek(pts[start], stream=stream, backward=True, any_frame=False)
        cc.flush_buffers()
        for packet in container.demux(stream):
            frames = cc.decode(packet if packet.size else None)
            _collect(frames, pending, found, index_of_pts)
            if p not in pending:
                break
        if p in pending:
            raise VideoError(path, f"decoder produced no frame for index {pending[p]}")
    return found


def _decode_sequential(stream, path, packets, targets):
    cc = stream.codec_context
    remaining = set(targets)
    last = max(targets)
    found: dict[int, np.ndarray] = {}
    i = 0

    def take(frames):
        nonlocal i
        for frame in frames:
            if i in remaining:
                found[i] = _to_rgb(frame)
                remaining.discard(i)
            i += 1

    for packet in packets:
        if not packet.size:
            continue
        take(cc.decode(packet))
        if i > last:
            break
    if remaining:
        take(cc.decode(None))
    if remaining:
        raise VideoError(path, f"decoder produced no frame for index {min(remaining)}")
    return found


def _collect(frames, pending, found, index_of_pts):
    for frame in frames:
        p = frame.pts
        if p in pending:
            found[pending.pop(p)] = _to_rgb(frame)
        elif p not in index_of_pts and p is not None:
            # Decoder timestamps that match no packet mean our index mapping is wrong;
            # silently returning a different frame would be worse than failing.
            raise ValueError(f"decoded frame pts {p} matches no demuxed packet")


def _first_video_stream(container, path: Path):
    for stream in container.streams:
        if stream.type == "video":
            return stream
    raise VideoError(path, "container has no video stream")


def _require_file(path: Path) -> None:
    if not path.exists():
        raise VideoError(path, "file does not exist")
    if not path.is_file():
        raise VideoError(path, "not a regular file")


def _as_index(path: Path, i) -> int:
    try:
        idx = int(i)
    except (TypeError, ValueError):
        raise VideoError(path, f"frame index {i!r} is not an integer") from None
    if idx != i or idx < 0:
        raise VideoError(path, f"frame index {i!r} out of range")
    return idx


def _as_rate(path: Path, fps) -> Fraction:
    try:
        rate = Fraction(fps).limit_denominator(1001000)
    except (TypeError, ValueError):
        raise VideoError(path, f"invalid fps {fps!r}") from None
    if rate <= 0:
        raise VideoError(path, f"invalid fps {fps!r}")
    return rate


def _check_rgb_frame(path: Path, arr, i: int, shape) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise VideoError(
            path, f"frame {i}: expected HxWx3 uint8 RGB, got {arr.dtype} {arr.shape}"
        )
    if shape is not None and arr.shape != shape:
        raise VideoError(path, f"frame {i}: shape {arr.shape} differs from first frame {shape}")
    return np.ascontiguousarray(arr)


def _add_video_stream(container, codec, rate, width, height, pix_fmt, gop, crf, preset, options):
    opts = dict(options or {})
    if crf is not None:
        opts["crf"] = str(crf)
    if preset is not None:
        opts["preset"] = str(preset)
    stream = container.add_stream(codec, rate=rate, options=opts)
    stream.width = width
    stream.height = height
    stream.pix_fmt = pix_fmt
    # Frame pts are plain frame numbers; a 1/fps time base keeps them exact.
    stream.codec_context.time_base = 1 / rate
    if gop is not None:
        stream.codec_context.gop_size = int(gop)
    return stream


def _to_video_frame(arr: np.ndarray, pix_fmt: str):
    h, w = arr.shape[:2]
    if pix_fmt == "yuv420p" and not (h % 2 or w % 2):
        # OpenCV's BT.601 RGB->I420 matches swscale's default to +-1 level and is
        # several times cheaper; the conversion was ~30% of encoding a small frame.
        import cv2

        return av.VideoFrame.from_ndarray(cv2.cvtColor(arr, cv2.COLOR_RGB2YUV_I420),
                                          format="yuv420p")
    return av.VideoFrame.from_ndarray(arr, format="rgb24")


def _unlink_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass
