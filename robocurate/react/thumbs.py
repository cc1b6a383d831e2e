"""128x128 CHW thumbnails of React frames, the recipe shared by views and tactile frames.

Reference ``react-tactile-and-owa.md`` 1.2 (``to_thumb_chw`` / ``cam_to_view_chw`` of
``build_episodes_from_h5.py``), for a ``H x W x 3`` uint8 frame:

1. centre-crop to a square: ``c = (W - H) // 2`` and keep columns ``[c, c + H)``
   (a portrait frame, never seen in React, keeps rows ``[c, c + W)`` symmetrically);
2. ``cv2.resize`` to 128x128 with ``INTER_AREA``;
3. transpose to CHW. The channel order is kept as stored (cameras BGR, GelSight RGB).

Why there is a second implementation of step 2, and why it is bit-exact
-----------------------------------------------------------------------
``cv2``'s INTER_AREA for a non-integer ratio (480 -> 128 is 3.75) is scalar float code,
~0.45 ms per 480x480 crop: five streams made contact indexing compute-bound (2.4x the
h5py read time on LZ4 input). For a crop side ``s``, write ``s / 128 = q / u`` in lowest
terms. Every output pixel is the area average over a ``q/u x q/u`` cell whose tap
weights are whole multiples of ``1/u`` pixel, so the exact average is ``N / q**2`` with
``N`` an integer (``N <= 255 q**2``). When ``q`` is odd, ``N / q**2`` is never exactly
halfway between integers: it is at least ``1 / (2 q**2)`` away (0.0022 for ``q = 15``,
which covers 480 and 240 pixel crops). ``cv2`` computes the same average in float32 with
an error below 3e-4, so its rounded result is the rounded exact average, which
``_area_frames`` computes in integers (vertical taps then horizontal taps, compiled with
numba, GIL released): 0.13 ms per 480x480 crop. Other sizes (even ``q``, ``q > 15``,
upscaling, non-uint8 or non-3-channel frames) use ``cv2`` itself. The unit tests compare
both against ``cv2`` on random and extreme frames.

Pure library: no Prefect.
"""

from __future__ import annotations

from functools import lru_cache
from math import gcd
from typing import NamedTuple

import cv2
import numba
import numpy as np

__all__ = ["THUMB", "centre_crop", "exact_plan", "thumbnail", "thumbnails_into"]

THUMB = 128
_MAX_Q = 15  # largest odd q whose halfway margin (1/(2 q^2)) dwarfs cv2's float error


def centre_crop(frame: np.ndarray) -> np.ndarray:
    """The central square of an ``H x W [x C]`` frame (a view, no copy)."""
    h, w = frame.shape[:2]
    if w >= h:
        c = (w - h) // 2
        return frame[:, c:c + h]
    c = (h - w) // 2
    return frame[c:c + w, :]


class _Plan(NamedTuple):
    y0: int             # crop origin in the frame
    x0: int
    side: int           # crop side s
    q: int              # s / 128 = q / u in lowest terms
    u: int
    start: np.ndarray   # (128,) first source index of each output index
    count: np.ndarray   # (128,) taps per output index
    weight: np.ndarray  # (128, taps) integer tap weights (units of 1/u pixel)
    phase: np.ndarray   # (u, q) weights of one period: output g*u+p, source g*q+t
    mul: int            # round(N / q^2) == ((N + (q^2 - 1) // 2) * mul) >> shift
    shift: int


@lru_cache(maxsize=32)
def exact_plan(height: int, width: int) -> _Plan | None:
    """The integer area plan for frames of this size, or None where ``cv2`` must be used."""
    s = min(height, width)
    g = gcd(s, THUMB)
    q, u = s // g, THUMB // g
    if s < THUMB or q % 2 == 0 or q > _MAX_Q:
        return None
    start = np.zeros(THUMB, np.int64)
    count = np.zeros(THUMB, np.int64)
    weight = np.zeros((THUMB, q // u + 2), np.uint16)
    for o in range(THUMB):
        a, b = o * q, (o + 1) * q  # the cell of output o, in units of 1/u source pixel
        first, last = a // u, (b - 1) // u
        start[o], count[o] = first, last - first + 1
        for k, i in enumerate(range(first, last + 1)):
            weight[o, k] = min(b, (i + 1) * u) - max(a, i * u)
    phase = np.zeros((u, q), np.uint16)
    for p in range(u):
        a, b = p * q, (p + 1) * q
        for t in range(q):
            phase[p, t] = max(0, min(b, (t + 1) * u) - max(a, t * u))
    mul, shift = _divider(q * q, 255 * q * q)
    return _Plan((height - s) // 2, (width - s) // 2, s, q, u, start, count, weight, phase,
                 mul, shift)


def _divider(d: int, top: int) -> tuple[int, int]:
    """``(mul, shift)`` with ``((n + h) * mul) >> shift == (n + h) // d`` for every
    ``0 <= n <= top`` (``h = (d - 1) // 2``) in uint32 arithmetic: checked, not assumed."""
    n = np.arange(top + 1, dtype=np.uint64) + (d - 1) // 2
    for shift in range(24, 7, -1):
        mul = -(-(1 << shift) // d)
        if int(n[-1]) * mul < 1 << 32 and np.array_equal((n * mul) >> shift, n // d):
            return mul, shift
    raise ValueError(f"no uint32 divider for {d}")  # pragma: no cover


def _compiled(fn):
    """Compiled without the GIL, cached on disk (2 s to compile) where numba finds a
    writable place: next to this file, ``~/.cache`` or ``NUMBA_CACHE_DIR``."""
    try:
        return numba.njit(nogil=True, cache=True, boundscheck=False)(fn)
    except RuntimeError:  # read-only install and no writable home: compile per process
        return numba.njit(nogil=True, boundscheck=False)(fn)


@_compiled
def _area_frames(frames, y0, x0, s, q, u, start, count, weight, phase, mul, shift,
                 repeats, prev_frame, prev_thumb, out):  # pragma: no cover  (compiled)
    """Thumbnails of frames (n, H, W*3 uint8) into out (n, 3, 128, 128). With
    ``repeats``, frame 0 is compared with ``prev_frame`` (H, W*3) whose thumbnail is
    ``prev_thumb`` (3, 128, 128); an empty ``prev_frame`` means there is none."""
    d = out.shape[2]
    width = s * 3
    groups = s // q
    gc = groups * 3
    h = np.uint32((q * q - 1) // 2)
    # uint16 holds every sum: at most 255 q^2 = 57375 for q <= 15, 16 lanes per vector.
    vert = np.empty(width, np.uint16)
    by_phase = np.empty(width, np.uint16)  # vert reordered as [x % q][x // q][channel]
    horiz = np.empty((u, gc), np.uint16)
    rounded = np.empty((u, gc), np.uint8)
    for i in range(frames.shape[0]):
        if repeats and (i > 0 or prev_frame.shape[0] > 0):
            earlier = frames[i - 1] if i > 0 else prev_frame
            # Only the crop decides the thumbnail. A whole row is OR-reduced before the
            # test, which compiles to vector code (an early exit per byte would not).
            same = True
            for r in range(y0, y0 + s):
                now = frames[i, r, x0 * 3:x0 * 3 + width]
                before = earlier[r, x0 * 3:x0 * 3 + width]
                diff = np.uint8(0)
                for j in range(width):
                    diff |= now[j] ^ before[j]
                if diff != 0:
                    same = False
                    break
            if same:
                out[i] = out[i - 1] if i > 0 else prev_thumb
                continue
        frame = frames[i]
        for oy in range(d):
            row0 = y0 + start[oy]
            row = frame[row0, x0 * 3:x0 * 3 + width]  # 1-D contiguous: vector code
            w = weight[oy, 0]
            for j in range(width):
                vert[j] = w * np.uint16(row[j])
            for k in range(1, count[oy]):
                row = frame[row0 + k, x0 * 3:x0 * 3 + width]
                w = weight[oy, k]
                for j in range(width):
                    vert[j] += w * np.uint16(row[j])
            # Output columns g*u+p read source columns g*q+t with the same weight for every
            # g: in this order each (p, t) term is one contiguous vector operation.
            for g in range(groups):
                for t in range(q):
                    src = (g * q + t) * 3
                    dst = t * gc + g * 3
                    by_phase[dst] = vert[src]
                    by_phase[dst + 1] = vert[src + 1]
                    by_phase[dst + 2] = vert[src + 2]
            horiz[:] = 0
            for p in range(u):
                for t in range(q):
                    w = phase[p, t]
                    if w != 0:
                        base = t * gc
                        for j in range(gc):
                            horiz[p, j] += w * by_phase[base + j]
            for p in range(u):
                for j in range(gc):  # round(N / q^2) as ((N + h) * M) >> S, see exact_plan
                    rounded[p, j] = np.uint8(((np.uint32(horiz[p, j]) + h) * mul) >> shift)
            for g in range(groups):
                for p in range(u):
                    ox = g * u + p
                    out[i, 0, oy, ox] = rounded[p, g * 3]
                    out[i, 1, oy, ox] = rounded[p, g * 3 + 1]
                    out[i, 2, oy, ox] = rounded[p, g * 3 + 2]


def _cv2_frames(frames: np.ndarray, out: np.ndarray, repeats: bool,
                previous: tuple[np.ndarray, np.ndarray] | None) -> None:
    for i in range(len(frames)):
        before = frames[i - 1] if i > 0 else previous[0] if previous is not None else None
        if repeats and before is not None and np.array_equal(centre_crop(frames[i]),
                                                             centre_crop(before)):
            out[i] = out[i - 1] if i > 0 else previous[1]  # same bytes, same thumbnail
            continue
        out[i] = cv2.resize(centre_crop(frames[i]), (THUMB, THUMB),
                            interpolation=cv2.INTER_AREA).transpose(2, 0, 1)


def thumbnails_into(frames: np.ndarray, out: np.ndarray, repeats: bool = False,
                    previous: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Thumbnail ``frames`` (n, H, W, 3) into ``out`` (n, 3, 128, 128) uint8.

    ``repeats``: a frame whose crop is byte-identical to the frame before reuses its
    thumbnail. Legacy GelSight streams are ~72 % repeated rows (the sensor delivered
    ~8 fps into 30 Hz rows, reference 1.1). ``previous``: the frame before ``frames[0]``
    and its thumbnail, for callers that thumbnail a stream a few frames at a time. The
    GIL is released throughout (on the integer path), so callers run slices on several
    threads.
    """
    n = len(frames)
    if out.shape != (n, 3, THUMB, THUMB) or out.dtype != np.uint8:
        raise ValueError(f"out is {out.dtype} {out.shape}, expected uint8 "
                         f"{(n, 3, THUMB, THUMB)}")
    h, w = frames.shape[1:3]
    plan = (exact_plan(h, w) if frames.dtype == np.uint8 and frames.ndim == 4
            and frames.shape[3] == 3 else None)
    if plan is None:
        _cv2_frames(frames, out, repeats, previous)
        return
    rows = np.ascontiguousarray(frames).reshape(n, h, w * 3)
    if previous is not None and previous[0].shape == frames.shape[1:]:
        prev_frame = np.ascontiguousarray(previous[0]).reshape(h, w * 3)
        prev_thumb = np.ascontiguousarray(previous[1])
    else:
        prev_frame = np.empty((0, w * 3), np.uint8)
        prev_thumb = np.empty((3, THUMB, THUMB), np.uint8)
    _area_frames(rows, plan.y0, plan.x0, plan.side, plan.q, plan.u, plan.start,
                 plan.count, plan.weight, plan.phase, np.uint32(plan.mul),
                 np.uint32(plan.shift), repeats, prev_frame, prev_thumb, np.asarray(out))


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """``(3, 128, 128)`` uint8 thumbnail of one ``H x W x 3`` uint8 frame."""
    out = np.empty((1, 3, THUMB, THUMB), np.uint8)
    thumbnails_into(frame[None], out)
    return out[0]
