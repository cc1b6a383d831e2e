"""Normalized flow: contact tracks resampled at equal arc-length steps of the centroid.

Arc length is measured on the contact centroids, ``cum[0] = 0``,
``cum[i] = sum_{k<=i} |c_k - c_{k-1}|`` (metres), ``L = cum[-1]``:

* ``M = ceil(L / step) + 1`` targets ``linspace(0, L, M)``: the spacing is ``L / (M-1)``,
  at most ``step`` (exactly ``step`` only when ``L`` is a multiple of it), and the first
  and last samples are the first and last frames.
* For a target, ``i = searchsorted(cum, target)`` (left side): ``i == 0`` -> frame 0,
  ``i >= T`` -> the last frame, else ``s = (target - cum[i-1]) / (cum[i] - cum[i-1])``
  (``s = 0`` when the gap is below 1e-10) and positions (centroids, every track point,
  frame origins) are interpolated linearly between frames ``i-1`` and ``i``; frame
  rotations by quaternion SLERP on the shortest arc (normalised lerp when the
  quaternions are nearly equal, dot > 0.9995).
* ``frame_to_normalized_idx[i] = argmin_j |targets_j - cum[i]|`` (ties to the lower j),
  int32; ``cumulative_distance_mm = cum * 1000`` (float64).

Edge cases (as the original pipeline):

* fewer than 2 frames: the inputs are copied, ``cum = 0``, ``M = T`` and
  ``frame_to_normalized_idx = arange(T)``;
* a path shorter than one step (``L < step``): only the first and last frames are kept
  (``M = 2``); ``frame_to_normalized_idx`` is 0 for ``i < T // 2`` and 1 after.

Pauses collapse onto one index; fast motion is subdivided.
"""

from __future__ import annotations

import math

import numpy as np


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """[...,3,3] -> [...,4] unit quaternions (w, x, y, z), Shepperd's method."""
    R = np.asarray(R, dtype=np.float64)
    m00, m11, m22 = R[..., 0, 0], R[..., 1, 1], R[..., 2, 2]
    tr = m00 + m11 + m22
    cand = np.stack([
        np.stack([1 + tr, R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0],
                  R[..., 1, 0] - R[..., 0, 1]], -1),
        np.stack([R[..., 2, 1] - R[..., 1, 2], 1 + m00 - m11 - m22,
                  R[..., 0, 1] + R[..., 1, 0], R[..., 0, 2] + R[..., 2, 0]], -1),
        np.stack([R[..., 0, 2] - R[..., 2, 0], R[..., 0, 1] + R[..., 1, 0],
                  1 - m00 + m11 - m22, R[..., 1, 2] + R[..., 2, 1]], -1),
        np.stack([R[..., 1, 0] - R[..., 0, 1], R[..., 0, 2] + R[..., 2, 0],
                  R[..., 1, 2] + R[..., 2, 1], 1 - m00 - m11 + m22], -1),
    ], -2)
    # Pick, per matrix, the candidate with the largest diagonal term (best conditioned).
    which = np.argmax(np.stack([tr, m00, m11, m22], -1), axis=-1)
    q = np.take_along_axis(cand, which[..., None, None], axis=-2)[..., 0, :]
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def slerp(q0: np.ndarray, q1: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Shortest-arc SLERP of [N,4] quaternion pairs at fractions s [N]."""
    q0, q1 = np.asarray(q0, np.float64), np.asarray(q1, np.float64).copy()
    s = np.asarray(s, np.float64)[:, None]
    dot = np.sum(q0 * q1, axis=-1)
    q1[dot < 0] *= -1
    dot = np.abs(dot)[:, None]
    near = dot > 0.9995
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin = np.sin(theta)
    safe = np.where(near, 1.0, sin)
    w0 = np.where(near, 1 - s, np.sin((1 - s) * theta) / safe)
    w1 = np.where(near, s, np.sin(s * theta) / safe)
    out = w0 * q0 + w1 * q1
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def _interp_frames(frames: np.ndarray, lo: np.ndarray, hi: np.ndarray, s: np.ndarray
                   ) -> np.ndarray:
    frames = np.asarray(frames, dtype=np.float64)
    quats = matrix_to_quat(frames[:, :3, :3])
    out = np.zeros((len(s), 4, 4), dtype=np.float32)
    out[:, :3, :3] = quat_to_matrix(slerp(quats[lo], quats[hi], s))
    pos = frames[:, :3, 3]
    out[:, :3, 3] = pos[lo] + s[:, None] * (pos[hi] - pos[lo])
    out[:, 3, 3] = 1.0
    return out


def cumulative_distance(centroids: np.ndarray) -> np.ndarray:
    c = np.asarray(centroids, dtype=np.float64)
    if len(c) == 0:
        return np.zeros(0)
    d = np.linalg.norm(np.diff(c, axis=0), axis=-1)
    return np.concatenate([[0.0], np.cumsum(d)])


def normalize_flow(tracks_3d: np.ndarray, centroids: np.ndarray, frames: np.ndarray,
                   left_frames: np.ndarray, right_frames: np.ndarray,
                   step_mm: float = 1.0) -> dict[str, np.ndarray]:
    """The normalized-flow keys of tracks.npz (see the module docstring)."""
    if not step_mm > 0:
        raise ValueError("step_mm must be > 0")
    T = len(centroids)
    step = step_mm / 1000.0
    out_keys = ("normalized_tracks_3d", "normalized_centroids", "normalized_frames",
                "normalized_left_frames", "normalized_right_frames")
    inputs = (tracks_3d, centroids, frames, left_frames, right_frames)

    if T < 2:
        res = {k: np.asarray(v, dtype=np.float32).copy() for k, v in zip(out_keys, inputs)}
        res.update(cumulative_distance_mm=np.zeros(T), frame_to_normalized_idx=np.arange(
            T, dtype=np.int32), num_normalized_steps=T, normalized_step_size_mm=float(step_mm))
        return res

    cum = cumulative_distance(centroids)
    L = float(cum[-1])
    if L < step:
        idx = np.array([0, T - 1])
        res = {k: np.asarray(v, dtype=np.float32)[idx] for k, v in zip(out_keys, inputs)}
        f2n = (np.arange(T) >= T // 2).astype(np.int32)
        res.update(cumulative_distance_mm=cum * 1000.0, frame_to_normalized_idx=f2n,
                   num_normalized_steps=2, normalized_step_size_mm=float(step_mm))
        return res

    M = int(math.ceil(L / step)) + 1
    targets = np.linspace(0.0, L, M)
    i = np.searchsorted(cum, targets, side="left")
    lo = np.clip(i - 1, 0, T - 1)
    hi = np.clip(i, 0, T - 1)
    gap = cum[hi] - cum[lo]
    s = np.where(gap < 1e-10, 0.0, (targets - cum[lo]) / np.where(gap < 1e-10, 1.0, gap))
    first, last = i == 0, i >= T
    lo[first], hi[first], s[first] = 0, 0, 0.0
    lo[last], hi[last], s[last] = T - 1, T - 1, 0.0
    s = np.clip(s, 0.0, 1.0)

    def lerp(a):
        a = np.asarray(a)
        shape = (-1,) + (1,) * (a.ndim - 1)
        s_ = s.reshape(shape).astype(np.float32)
        return (a[lo] + s_ * (a[hi] - a[lo])).astype(np.float32)

    # argmin over uniform targets, ties to the lower index (as np.argmin would).
    j = np.clip(np.searchsorted(targets, cum, side="left"), 1, M - 1)
    f2n = np.where(np.abs(targets[j - 1] - cum) <= np.abs(targets[j] - cum), j - 1, j)
    return {
        "normalized_tracks_3d": lerp(np.asarray(tracks_3d, dtype=np.float32)),
        "normalized_centroids": lerp(np.asarray(centroids, dtype=np.float64)),
        "normalized_frames": _interp_frames(frames, lo, hi, s),
        "normalized_left_frames": _interp_frames(left_frames, lo, hi, s),
        "normalized_right_frames": _interp_frames(right_frames, lo, hi, s),
        "cumulative_distance_mm": cum * 1000.0,
        "frame_to_normalized_idx": f2n.astype(np.int32),
        "num_normalized_steps": M,
        "normalized_step_size_mm": float(step_mm),
    }
