"""Pinhole projection of the 3D contact tracks into each camera.

``p_cam = inv(T_world_cam) p``; a point is valid when ``z > min_depth`` (in front of the
camera and not too close), ``u = fx x / z + cx``, ``v = fy y / z + cy`` (OpenCV
convention: x right, y down, z forward). Invalid points are NaN in both u and v. No
distortion is applied: DROID's MP4s (and the ``conf`` source's rectified intrinsics)
are rectified images. Points outside the image keep their coordinates, as in the
original; :func:`fraction_inside` measures how many land inside.
"""

from __future__ import annotations

import numpy as np


def intrinsic_matrix(intr: dict) -> np.ndarray:
    return np.array([[intr["fx"], 0.0, intr["cx"]], [0.0, intr["fy"], intr["cy"]],
                     [0.0, 0.0, 1.0]], dtype=np.float64)


def project_tracks(tracks_3d: np.ndarray, T_world_cam: np.ndarray, K: np.ndarray,
                   min_depth: float = 0.1) -> np.ndarray:
    """[T,N,3] world points, a 4x4 (static) or [T,4,4] camera pose -> [T,N,2] float32."""
    pts = np.asarray(tracks_3d, dtype=np.float64)
    T_wc = np.asarray(T_world_cam, dtype=np.float64)
    if T_wc.ndim == 2:
        T_wc = np.broadcast_to(T_wc, (len(pts), 4, 4))
    # inv([R|t]) = [R^T | -R^T t], computed directly instead of a general inverse.
    Rt = np.swapaxes(T_wc[:, :3, :3], 1, 2)
    t = -np.einsum("tij,tj->ti", Rt, T_wc[:, :3, 3])
    cam = np.einsum("tij,tnj->tni", Rt, pts) + t[:, None, :]
    z = cam[..., 2]
    valid = z > min_depth
    zs = np.where(valid, z, 1.0)
    uv = np.empty(pts.shape[:2] + (2,), dtype=np.float32)
    uv[..., 0] = np.where(valid, K[0, 0] * cam[..., 0] / zs + K[0, 2], np.nan)
    uv[..., 1] = np.where(valid, K[1, 1] * cam[..., 1] / zs + K[1, 2], np.nan)
    return uv


def fraction_inside(uv: np.ndarray, width: int, height: int) -> float:
    """Fraction of all track points (NaN ones count as outside) that land in the image."""
    if uv.size == 0:
        return 0.0
    u, v = uv[..., 0], uv[..., 1]
    with np.errstate(invalid="ignore"):
        inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    return float(inside.mean())


def fraction_valid(uv: np.ndarray) -> float:
    """Fraction of points in front of the camera (farther than min_depth)."""
    if uv.size == 0:
        return 0.0
    return float(np.isfinite(uv[..., 0]).mean())
