"""Screen frames of OWA recordings: ``media_ref`` resolution and frame decoding with PyAV.

A screen event's payload (``desktop/ScreenCaptured``) names its frame by
``media_ref = {uri, pts_ns}``; a relative ``uri`` is relative to the MCAP file's folder
(the original's ``resolve_relative_path``). ``shape`` is (width, height).

``FrameLoader`` keeps a small LRU of open containers. Frames asked for in increasing
time from the same video are decoded forward from where the decoder stands, without
seeking again; a jump backwards or far ahead seeks to the keyframe before the target.
The frame returned for ``pts_ns`` is the one on screen at that time: the last frame whose
presentation time is <= pts_ns (+1 ms for the millisecond time bases of the recorder).
Recorders pad odd frame sizes to even ones (0.5.1: a 1025x1017 screen is stored
1026x1018): a frame at most one pixel larger than the declared shape is cropped to it.
"""

from __future__ import annotations

import base64
import io
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import orjson

TOLERANCE_NS = 1_000_000
PLACEHOLDER_SHAPE = (512, 512)  # (width, height), the original's fallback frame size


class MediaError(RuntimeError):
    """A screen frame that cannot be loaded; the message names MCAP, URI and time."""


@dataclass(frozen=True)
class ScreenRef:
    """Where one screen frame lives. ``path`` is resolved (absolute path, URL or data URI)."""

    uri: str
    path: str
    pts_ns: int
    shape: tuple[int, int] | None
    episode_path: str | None = None
    timestamp_ns: int | None = None

    def where(self) -> str:
        at = f"pts_ns={self.pts_ns}"
        if self.timestamp_ns is not None:
            at += f", event timestamp_ns={self.timestamp_ns}"
        return f"{self.episode_path or '<no mcap>'}: screen frame {at}, media uri '{self.uri}'"


def resolve_media_path(uri: str, episode_path: str | os.PathLike | None) -> str:
    """``uri`` resolved against the MCAP file's folder (URLs and data URIs unchanged)."""
    if uri.startswith("data:"):
        return uri
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    if parsed.scheme in ("http", "https", "rtsp", "s3", "gs"):
        return uri
    p = Path(uri)
    if not p.is_absolute() and episode_path is not None:
        p = Path(episode_path).parent / p
    return str(p)


def parse_screen(payload, episode_path=None, timestamp_ns: int | None = None) -> ScreenRef:
    """A ScreenCaptured payload (JSON bytes/str or dict) to a resolved ``ScreenRef``.
    Also reads the pre-0.5 spellings (``path``/``pts``) in case a row was not normalised."""
    try:
        d = payload if isinstance(payload, dict) else orjson.loads(payload)
        ref = d.get("media_ref")
        if ref is not None:
            uri, pts = ref["uri"], ref.get("pts_ns")
        else:
            uri, pts = d["path"], d.get("pts")
        shape = d.get("shape")
        shape = (int(shape[0]), int(shape[1])) if shape else None
    except (orjson.JSONDecodeError, KeyError, TypeError, IndexError, ValueError) as exc:
        raise MediaError(f"{episode_path}: screen payload without a usable media_ref "
                         f"(timestamp_ns={timestamp_ns}): {exc}") from exc
    return ScreenRef(uri=str(uri), path=resolve_media_path(str(uri), episode_path),
                     pts_ns=int(pts or 0), shape=shape,
                     episode_path=str(episode_path) if episode_path is not None else None,
                     timestamp_ns=timestamp_ns)


class _VideoReader:
    """One open container; decodes forward, seeks only when it must."""

    def __init__(self, path: str, forward_window_ns: int):
        import av

        self.container = av.open(path)
        if not self.container.streams.video:
            self.container.close()
            raise MediaError(f"{path}: no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        tb = self.stream.time_base
        self._num, self._den = tb.numerator, tb.denominator
        self.forward_window_ns = forward_window_ns
        self._iter = None
        self._prev = None  # (ns, frame): last frame at or before the last target
        self._next = None  # (ns, frame): first frame after it (look-ahead, kept)
        self._eof = False
        self.seeks = 0

    def _ns(self, frame) -> int:
        if frame.pts is None:
            return int(round(frame.time * 1e9))
        return frame.pts * self._num * 1_000_000_000 // self._den

    def _seek(self, target_ns: int) -> None:
        pts = max(0, target_ns * self._den // (self._num * 1_000_000_000))
        self.container.seek(pts, stream=self.stream, backward=True, any_frame=False)
        self._iter = self.container.decode(self.stream)
        self._prev = self._next = None
        self._eof = False
        self.seeks += 1

    def _fill_next(self) -> None:
        if self._next is None and not self._eof:
            try:
                frame = next(self._iter)
                self._next = (self._ns(frame), frame)
            except StopIteration:
                self._eof = True

    def read(self, target_ns: int):
        limit = target_ns + TOLERANCE_NS
        if (self._iter is None
                or (self._prev is not None and (limit < self._prev[0]
                                                or target_ns - self._prev[0] > self.forward_window_ns))
                or (self._prev is None and self._next is not None and limit < self._next[0])):
            self._seek(target_ns)
        for attempt in (0, 1):
            while True:
                self._fill_next()
                if self._next is not None and self._next[0] <= limit:
                    self._prev, self._next = self._next, None
                    continue
                break
            if self._prev is not None or attempt:
                break
            # The seek landed after the target (imprecise index): start from the beginning.
            self._seek(0)
        if self._prev is not None:
            return self._prev[1]
        if self._next is not None:  # target before the first frame: the first frame shows
            return self._next[1]
        raise MediaError("video has no decodable frame")

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - closing a broken container must not mask the cause
            pass


class FrameLoader:
    """Loads screen frames as RGB arrays / PIL images.

    ``placeholder=True``: a frame that cannot be loaded (missing video, decode error) is a
    black image of the declared shape (512x512 when unknown) and the problem is counted in
    ``self.failures``; otherwise a ``MediaError`` is raised.
    """

    def __init__(self, max_open: int = 4, placeholder: bool = False,
                 forward_window_ns: int = 2_000_000_000):
        self.max_open = max(1, max_open)
        self.placeholder = placeholder
        self.forward_window_ns = forward_window_ns
        self._readers: OrderedDict[str, _VideoReader] = OrderedDict()
        self.failures: list[str] = []

    # Pickled into DataLoader workers: open containers stay behind.
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_readers"] = OrderedDict()
        return state

    def _reader(self, path: str) -> _VideoReader:
        reader = self._readers.get(path)
        if reader is not None:
            self._readers.move_to_end(path)
            return reader
        reader = _VideoReader(path, self.forward_window_ns)
        self._readers[path] = reader
        while len(self._readers) > self.max_open:
            _, old = self._readers.popitem(last=False)
            old.close()
        return reader

    def _decode(self, ref: ScreenRef) -> np.ndarray:
        if ref.path.startswith("data:"):
            from PIL import Image

            header, _, data = ref.path.partition(",")
            raw = base64.b64decode(data) if ";base64" in header else unquote(data).encode("latin-1")
            return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
        local = "://" not in ref.path
        if local and not os.path.isfile(ref.path):
            raise MediaError(f"{ref.where()}: video not found at {ref.path}")
        import av

        try:
            frame = self._reader(ref.path).read(ref.pts_ns)
            arr = frame.to_ndarray(format="rgb24")
        except MediaError as exc:
            self._drop(ref.path)
            raise MediaError(f"{ref.where()}: {exc}") from exc
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            self._drop(ref.path)
            raise MediaError(f"{ref.where()}: cannot decode {ref.path}: {exc}") from exc
        if ref.shape is not None:
            w, h = ref.shape
            if arr.shape[1] in (w, w + 1) and arr.shape[0] in (h, h + 1):
                arr = arr[:h, :w]
        return arr

    def _drop(self, path: str) -> None:
        reader = self._readers.pop(path, None)
        if reader is not None:
            reader.close()

    def load_rgb(self, screen, episode_path=None, timestamp_ns: int | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB frame of one screen payload (JSON/dict) or ``ScreenRef``."""
        try:
            ref = (screen if isinstance(screen, ScreenRef)
                   else parse_screen(screen, episode_path, timestamp_ns))
        except MediaError as exc:
            if not self.placeholder:
                raise
            self.failures.append(str(exc))
            w, h = PLACEHOLDER_SHAPE
            return np.zeros((h, w, 3), dtype=np.uint8)
        try:
            return self._decode(ref)
        except MediaError as exc:
            if not self.placeholder:
                raise
            self.failures.append(str(exc))
            w, h = ref.shape or PLACEHOLDER_SHAPE
            return np.zeros((h, w, 3), dtype=np.uint8)

    def load_pil(self, screen, episode_path=None, timestamp_ns: int | None = None):
        from PIL import Image

        return Image.fromarray(self.load_rgb(screen, episode_path, timestamp_ns))

    @property
    def seeks(self) -> int:
        return sum(r.seeks for r in self._readers.values())

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass
