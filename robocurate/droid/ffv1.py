"""Depth video as FFV1 lossless: write 16-bit millimetre frames, read them back bit-exact.

Two on-disk kinds exist and the reader tells them apart by the stream's pixel format:

``gray16le`` (what robocurate writes)
    FFV1 in Matroska, one 16-bit plane per frame, the value is depth in millimetres,
    0 = invalid. This is the format the seed's documentation promises ("16-bit grayscale
    (z16), millimeters, depth_meters = pixel_value / 1000").

``bgr_split`` (what the original pipeline actually wrote)
    ``extract_rgb_depth.py --compressed`` used ``cv2.VideoWriter(fourcc 'FFV1',
    isColor=True)`` on frames where the uint16 millimetre value was split into bytes:
    **B = low byte, G = high byte, R = 0**; decode with ``mm = (G << 8) | B``. OpenCV
    hands FFmpeg those frames as ``bgra``/``bgr0``, which FFV1 stores losslessly.

Frames are streamed in both directions: a writer takes one frame at a time and a
reader yields one frame at a time, so an episode of any length never sits in memory.
Writers go to a temporary file next to the target and are renamed into place only
when the whole video is written, so a crash never leaves half a ``depth.mkv``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = [
    "DEFAULT_SCALE",
    "DepthInfo",
    "DepthVideoError",
    "DepthWriter",
    "KIND_BGR_SPLIT",
    "KIND_GRAY16",
    "probe_depth",
    "read_depth",
    "read_depth_mm",
    "split_bytes_bgr",
    "join_bytes_bgr",
    "write_depth_mkv",
    "write_original_bgr_split",
]

KIND_GRAY16 = "gray16le"
KIND_BGR_SPLIT = "bgr_split_uint16"
DEFAULT_SCALE = 1000.0  # stored value per metre: depth_m = value / scale

# Pixel formats FFV1 may carry the original byte-split frames in: OpenCV passes BGR
# frames as 32-bit bgra/bgr0; bgr24/rgb/gbrp cover other writers of the same layout.
_SPLIT_FORMATS = {"bgra", "bgr0", "bgr24", "rgb24", "rgba", "rgb0", "gbrp", "0rgb", "argb",
                  "abgr", "0bgr"}
_READ_ERRORS = (av.error.FFmpegError, OSError, ValueError, RuntimeError, EOFError)

# Speed options for the encoder. FFV1 version 3 ("level 3") is needed for slices,
# and slices are what let the encoder use several threads on one frame. None of
# these options affect losslessness: FFV1 is lossless at every setting.
_DEFAULT_SLICES = 4
_SLICE_CHOICES = (4, 6, 9, 12, 16, 24, 30, 35, 42)  # valid FFV1 v3 slice counts
_MIN_SLICED_SIDE = 16


class DepthVideoError(Exception):
    """A depth video is missing, unreadable, not FFV1 depth, or not what was asked for."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class DepthInfo:
    path: str
    kind: str           # KIND_GRAY16 or KIND_BGR_SPLIT
    codec: str
    pix_fmt: str
    width: int
    height: int
    fps: float | None
    frames: int | None  # from the container when it says; None when unknown
    scale: float        # stored value per metre

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- byte split


def split_bytes_bgr(mm: np.ndarray) -> np.ndarray:
    """uint16 (H, W) millimetres -> (H, W, 3) uint8 BGR: B = low byte, G = high byte, R = 0."""
    mm = np.asarray(mm)
    if mm.dtype != np.uint16 or mm.ndim != 2:
        raise ValueError(f"expected a 2-D uint16 frame, got {mm.dtype} {mm.shape}")
    out = np.zeros(mm.shape + (3,), np.uint8)
    out[..., 0] = mm & 0xFF
    out[..., 1] = mm >> 8
    return out


def join_bytes_bgr(bgr: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> uint16 millimetres ``(G << 8) | B`` (the original's decode)."""
    return (bgr[..., 1].astype(np.uint16) << 8) | bgr[..., 0].astype(np.uint16)


def metres_to_mm(depth_m: np.ndarray) -> np.ndarray:
    """Float metres -> uint16 millimetres exactly as the original: NaN/inf -> 0, clip to
    [0, 65535], then cast (truncation, as ``astype(np.uint16)`` does)."""
    mm = np.nan_to_num(np.asarray(depth_m, np.float64) * 1000.0, nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(mm, 0, 65535).astype(np.uint16)


# --------------------------------------------------------------------------- writing


def _pick_slices(width: int, height: int, threads: int) -> int:
    # More slices than threads costs a little compression and buys nothing; each slice
    # must stay a reasonable size, so tiny frames get the minimum.
    want = max(_DEFAULT_SLICES, threads)
    if width * height < 256 * 256:
        want = _DEFAULT_SLICES
    return min((s for s in _SLICE_CHOICES if s >= want), default=_SLICE_CHOICES[-1])


class DepthWriter:
    """Stream uint16 millimetre frames into ``path`` as FFV1 gray16le in Matroska.

    ``with DepthWriter(path, width, height, fps) as w: w.write(frame)``; on a clean exit
    the file is renamed into place, on an exception the temporary file is removed.
    ``threads=0`` lets FFmpeg pick (one per core).
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float = 15.0, *,
                 threads: int = 0, slices: int | None = None, coder: str = "rice",
                 context: int = 0, slicecrc: bool = True):
        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"bad frame size {width}x{height}")
        self.fps = fps
        self.frames = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp.mkv", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        nthreads = threads or (os.cpu_count() or 1)
        try:
            self._container = av.open(str(self._tmp), mode="w", format="matroska")
            rate = Fraction(fps).limit_denominator(1001)
            stream = self._container.add_stream("ffv1", rate=rate)
            stream.width, stream.height = self.width, self.height
            stream.pix_fmt = "gray16le"
            options = {"coder": coder, "context": str(int(context))}
            if min(self.width, self.height) >= _MIN_SLICED_SIDE:
                options.update(level="3", slicecrc="1" if slicecrc else "0",
                               slices=str(slices or _pick_slices(self.width, self.height, nthreads)))
            else:
                # A slice grid cannot split a frame this thin (1 px fails outright); such
                # frames are too small for threads to matter, so use unsliced level 1.
                options["level"] = "1"
            stream.options = options
            stream.codec_context.thread_type = "SLICE"
            stream.codec_context.thread_count = int(threads)
            self._stream = stream
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise
        self._closed = False

    def write(self, mm: np.ndarray) -> None:
        mm = np.asarray(mm)
        if mm.dtype != np.uint16:
            raise ValueError(f"depth frames must be uint16 millimetres, got {mm.dtype}")
        if mm.shape != (self.height, self.width):
            raise ValueError(f"frame shape {mm.shape} != {(self.height, self.width)}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(mm), format="gray16le")
        frame.pts = self.frames
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> Path:
        """Flush, close and rename into place; returns the final path."""
        if self._closed:
            return self.path
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            with open(self._tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(self._tmp, 0o644)
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Drop everything written so far; the target path is left untouched."""
        if self._closed:
            return
        self._closed = True
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - already failing; the temp file goes anyway
            pass
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "DepthWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_depth_mkv(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 15.0,
                    **writer_options) -> int:
    """Write an iterable of uint16 (H, W) millimetre frames; returns the frame count.
    The size comes from the first frame. An empty iterable raises ValueError."""
    it = iter(frames)
    try:
        first = np.asarray(next(it))
    except StopIteration:
        raise ValueError("no depth frames to write") from None
    if first.ndim != 2:
        raise ValueError(f"depth frames must be 2-D, got shape {first.shape}")
    with DepthWriter(path, first.shape[1], first.shape[0], fps, **writer_options) as w:
        w.write(first)
        for frame in it:
            w.write(frame)
    return w.frames


def write_original_bgr_split(path: str | os.PathLike, frames: Iterable[np.ndarray],
                             fps: float = 30.0) -> int:
    """Write uint16 millimetre frames the way the original pipeline did, for tests and
    migration: ``cv2.VideoWriter(path, fourcc('FFV1'), fps, (W, H), isColor=True)`` fed
    ``split_bytes_bgr`` frames. OpenCV silently crops odd sizes to even, so odd sizes are
    refused here rather than written wrong. Written to a temp file and renamed."""
    import cv2  # only this writer needs OpenCV

    path = Path(path)
    it = iter(frames)
    try:
        first = np.asarray(next(it))
    except StopIteration:
        raise ValueError("no depth frames to write") from None
    h, w = first.shape
    if h % 2 or w % 2:
        raise ValueError(f"OpenCV's FFV1 writer crops odd sizes; got {w}x{h}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.mkv", dir=path.parent)
    os.close(fd)
    n = 0
    try:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"FFV1"), float(fps), (w, h), True)
        if not writer.isOpened():
            raise RuntimeError("OpenCV could not open an FFV1 writer")
        for frame in _chain(first, it):
            writer.write(split_bytes_bgr(np.asarray(frame)))
            n += 1
        writer.release()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def _chain(first, rest):
    yield first
    yield from rest


# --------------------------------------------------------------------------- reading


def _sidecar_scale(path: Path) -> float:
    """Scale from a ``depth_meta.json`` beside the video (ours: ``scale``; the original's:
    ``depth_scale``), else millimetres."""
    meta = path.parent / "depth_meta.json"
    try:
        data = json.loads(meta.read_text())
        scale = float(data.get("scale", data.get("depth_scale", DEFAULT_SCALE)))
        return scale if scale > 0 else DEFAULT_SCALE
    except (OSError, ValueError, TypeError, AttributeError):
        return DEFAULT_SCALE


def _kind_of(pix_fmt: str | None) -> str | None:
    if pix_fmt == "gray16le":
        return KIND_GRAY16
    if pix_fmt in _SPLIT_FORMATS:
        return KIND_BGR_SPLIT
    return None


def _open(path: Path):
    if not path.is_file():
        raise DepthVideoError(path, "file not found")
    try:
        container = av.open(str(path), mode="r")
    except _READ_ERRORS as exc:
        raise DepthVideoError(path, f"cannot open: {exc}") from None
    if not container.streams.video:
        container.close()
        raise DepthVideoError(path, "no video stream")
    return container, container.streams.video[0]


def probe_depth(path: str | os.PathLike) -> DepthInfo:
    """Which kind of depth video ``path`` is, its size and rate, without decoding it."""
    path = Path(path)
    container, stream = _open(path)
    try:
        ctx = stream.codec_context
        pix_fmt = ctx.pix_fmt or (stream.format.name if stream.format else None)
        kind = _kind_of(pix_fmt)
        if ctx.name != "ffv1":
            raise DepthVideoError(path, f"codec is {ctx.name}, not FFV1: not a lossless depth video")
        if kind is None:
            raise DepthVideoError(path, f"pixel format {pix_fmt} is neither gray16le nor byte-split BGR")
        rate = stream.average_rate or stream.base_rate
        fps = float(rate) if rate else None
        frames = stream.frames or None
        if frames is None and fps and container.duration:
            # Matroska stores no frame count, but its segment duration (written when the
            # file is closed) is frames / fps, so it tells how many frames to expect.
            frames = int(round(container.duration / 1e6 * fps)) or None
        return DepthInfo(str(path), kind, ctx.name, pix_fmt, ctx.width, ctx.height,
                         fps, frames, _sidecar_scale(path))
    finally:
        container.close()


def read_depth_mm(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Yield each frame as uint16 (H, W) millimetres, from either kind of file.

    Raises DepthVideoError (naming the file) when it cannot be opened or decoded, is not
    FFV1 depth, has fewer frames than its declared duration (truncated), or a byte-split
    frame has a non-zero R channel (then it is not depth).
    """
    path = Path(path)
    info = probe_depth(path)
    container, stream = _open(path)
    stream.thread_type = "AUTO"
    index = 0
    try:
        try:
            for frame in container.decode(stream):
                if info.kind == KIND_GRAY16:
                    if frame.format.name != "gray16le":
                        raise DepthVideoError(path, f"frame {index} is {frame.format.name}, not gray16le")
                    yield frame.to_ndarray()
                else:
                    # Repacking bgra/bgr0 to bgr24 only drops the 4th byte: lossless.
                    bgr = frame.to_ndarray(format="bgr24")
                    if bgr[..., 2].any():
                        raise DepthVideoError(
                            path, f"frame {index}: R channel is not zero, so this is not byte-split depth")
                    yield join_bytes_bgr(bgr)
                index += 1
        except _READ_ERRORS as exc:
            raise DepthVideoError(path, f"decode failed at frame {index}: {exc}") from None
        if info.frames and index < info.frames:
            # A cut-off Matroska file decodes "cleanly" up to the cut: compare with the
            # duration the complete file declared so truncation is not silent.
            raise DepthVideoError(path, f"truncated: decoded {index} of {info.frames} frames")
    finally:
        container.close()


def read_depth(path: str | os.PathLike, *, scale: float | None = None) -> Iterator[np.ndarray]:
    """Yield each frame as float32 (H, W) metres (0 = invalid), from either kind of file.
    ``scale`` (stored value per metre) defaults to the sidecar ``depth_meta.json``'s, else 1000."""
    path = Path(path)
    s = float(scale) if scale else _sidecar_scale(path)
    inv = np.float32(1.0 / s)
    for mm in read_depth_mm(path):
        yield mm.astype(np.float32) * inv
