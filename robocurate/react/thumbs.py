"""128x128 CHW thumbnails of React frames, the recipe shared by views and tactile frames.

Reference ``react-tactile-and-owa.md`` 1.2 (``to_thumb_chw`` / ``cam_to_view_chw`` of
``build_episodes_from_h5.py``), for a ``H x W x 3`` uint8 frame:

1. centre-crop to a square: ``c = (W - H) // 2`` and keep columns ``[c, c + H)``
   (a portrait frame, never seen in React, keeps rows ``[c, c + W)`` symmetrically);
2. ``cv2.resize`` to 128x128 with ``INTER_AREA``;
3. transpose to CHW. The channel order is kept as stored (cameras BGR, GelSight RGB).

``cv2.resize`` releases the GIL, so several threads can thumbnail frames of one chunk at
once while another thread reads the next chunk from HDF5.

Pure library: no Prefect.
"""

from __future__ import annotations

from concurrent.futures import Executor

import cv2
import numpy as np

__all__ = ["THUMB", "centre_crop", "thumbnail", "thumbnails_into"]

THUMB = 128


def centre_crop(frame: np.ndarray) -> np.ndarray:
    """The central square of an ``H x W [x C]`` frame (a view, no copy)."""
    h, w = frame.shape[:2]
    if w >= h:
        c = (w - h) // 2
        return frame[:, c:c + h]
    c = (h - w) // 2
    return frame[c:c + w, :]


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """``(3, 128, 128)`` uint8 thumbnail of one ``H x W x 3`` uint8 frame."""
    small = cv2.resize(centre_crop(frame), (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(small.transpose(2, 0, 1))


def _thumbnail_range(frames: np.ndarray, out: np.ndarray, a: int, b: int,
                     repeats: bool = False) -> None:
    for i in range(a, b):
        if repeats and i > a and np.array_equal(frames[i], frames[i - 1]):
            out[i] = out[i - 1]  # same bytes, same thumbnail: 0.04 ms instead of 0.5 ms
            continue
        out[i] = cv2.resize(centre_crop(frames[i]), (THUMB, THUMB),
                            interpolation=cv2.INTER_AREA).transpose(2, 0, 1)


def thumbnails_into(frames: np.ndarray, out: np.ndarray, pool: Executor | None = None,
                    parts: int = 1, repeats: bool = False) -> None:
    """Thumbnail ``frames`` (n, H, W, 3) into ``out`` (n, 3, 128, 128) uint8.

    With ``pool`` the frames are split into ``parts`` contiguous runs done in parallel
    (one task per run, not per frame, so the pool's overhead stays negligible).
    ``repeats``: a frame byte-identical to the one before it (within a run) reuses its
    thumbnail. Legacy GelSight streams are ~72 % repeated rows (the sensor delivered
    ~8 fps into 30 Hz rows, reference 1.1).
    """
    n = len(frames)
    if out.shape != (n, 3, THUMB, THUMB):
        raise ValueError(f"out has shape {out.shape}, expected {(n, 3, THUMB, THUMB)}")
    if pool is None or parts <= 1 or n < 2:
        _thumbnail_range(frames, out, 0, n, repeats)
        return
    bounds = np.linspace(0, n, min(parts, n) + 1).astype(int)
    futures = [pool.submit(_thumbnail_range, frames, out, int(a), int(b), repeats)
               for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    for fut in futures:
        fut.result()
