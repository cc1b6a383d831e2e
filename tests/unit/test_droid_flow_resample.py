"""Arc-length resampling of contact tracks: spacing, mapping, SLERP and edge cases."""

import math

import cv2
import numpy as np
import pytest

from robocurate.droid.flow_resample import (matrix_to_quat, normalize_flow, quat_to_matrix,
                                            slerp)


def _rv(v):
    return cv2.Rodrigues(np.asarray(v, dtype=np.float64))[0]


def _ref_slerp(R0, R1, s):
    """R0 . exp(s . log(R0^T R1)): geodesic interpolation, computed with Rodrigues."""
    w = cv2.Rodrigues(R0.T @ R1)[0].ravel()
    return R0 @ _rv(s * w)


def _inputs(centroids, rots=None):
    c = np.asarray(centroids, dtype=np.float32)
    T = len(c)
    tracks = np.repeat(c[:, None, :], 4, axis=1) + np.arange(4, dtype=np.float32)[None, :, None] * 0.01
    frames = np.tile(np.eye(4, dtype=np.float32), (T, 1, 1))
    if rots is not None:
        frames[:, :3, :3] = rots
    frames[:, :3, 3] = c
    return tracks, c, frames, frames.copy(), frames.copy()


def test_straight_line_spacing_is_L_over_M_minus_1():
    x = np.array([0.0, 0.002, 0.0061, 0.0105])  # 10.5 mm in uneven steps
    c = np.c_[x, np.zeros(4), np.zeros(4)]
    out = normalize_flow(*_inputs(c), step_mm=1.0)
    M = math.ceil(10.5) + 1
    assert out["num_normalized_steps"] == M == len(out["normalized_centroids"])
    d = np.linalg.norm(np.diff(out["normalized_centroids"].astype(float), axis=0), axis=1)
    np.testing.assert_allclose(d, 0.0105 / (M - 1), atol=1e-7)
    np.testing.assert_allclose(out["normalized_centroids"][[0, -1]], c[[0, -1]], atol=1e-7)
    np.testing.assert_allclose(out["cumulative_distance_mm"], x * 1000, atol=1e-4)
    # Every track point moves with the centroid here.
    np.testing.assert_allclose(out["normalized_tracks_3d"][:, 2] - out["normalized_centroids"],
                               0.02, atol=1e-6)
    assert out["frame_to_normalized_idx"].dtype == np.int32
    assert out["normalized_tracks_3d"].dtype == np.float32


def test_curved_path_steps_never_exceed_the_step_and_mapping_is_argmin():
    t = np.linspace(0, np.pi, 40)
    c = np.c_[0.1 * np.cos(t), 0.1 * np.sin(t), 0.02 * t]
    c[10:15] = c[10]  # a pause collapses onto one index
    out = normalize_flow(*_inputs(c), step_mm=2.0)
    d = np.linalg.norm(np.diff(out["normalized_centroids"].astype(float), axis=0), axis=1)
    assert d.max() <= 0.002 + 1e-6
    cum = out["cumulative_distance_mm"] / 1000
    targets = np.linspace(0, cum[-1], out["num_normalized_steps"])
    brute = np.argmin(np.abs(targets[None, :] - cum[:, None]), axis=1)
    np.testing.assert_array_equal(out["frame_to_normalized_idx"], brute)
    assert len(set(out["frame_to_normalized_idx"][10:15])) == 1


def test_fewer_than_two_frames_are_copied():
    one = normalize_flow(*_inputs([[0.1, 0.2, 0.3]]))
    assert one["num_normalized_steps"] == 1
    np.testing.assert_array_equal(one["cumulative_distance_mm"], [0.0])
    np.testing.assert_array_equal(one["frame_to_normalized_idx"], [0])
    np.testing.assert_allclose(one["normalized_centroids"], [[0.1, 0.2, 0.3]], atol=1e-7)
    zero = normalize_flow(np.zeros((0, 4, 3)), np.zeros((0, 3)), np.zeros((0, 4, 4)),
                          np.zeros((0, 4, 4)), np.zeros((0, 4, 4)))
    assert zero["num_normalized_steps"] == 0 and zero["normalized_tracks_3d"].shape == (0, 4, 3)


def test_path_shorter_than_one_step_keeps_first_and_last():
    c = np.c_[np.linspace(0, 0.0004, 5), np.zeros(5), np.zeros(5)]
    out = normalize_flow(*_inputs(c), step_mm=1.0)
    assert out["num_normalized_steps"] == 2
    np.testing.assert_allclose(out["normalized_centroids"], c[[0, -1]], atol=1e-7)
    np.testing.assert_array_equal(out["frame_to_normalized_idx"], [0, 0, 1, 1, 1])


def test_frames_are_slerped():
    T = 5
    x = np.linspace(0, 0.01, T)
    rots = np.stack([_rv([0.3 * a, -0.2 * a, a]) for a in np.radians([0, 10, 40, 60, 170])])
    out = normalize_flow(*_inputs(np.c_[x, np.zeros(T), np.zeros(T)], rots), step_mm=1.0)
    targets = np.linspace(0, 0.01, out["num_normalized_steps"])
    ref = []
    for tgt in targets:
        i = min(int(np.searchsorted(x, tgt, side="left")), T - 1)
        i = max(i, 1)
        s = (tgt - x[i - 1]) / (x[i] - x[i - 1])
        ref.append(_ref_slerp(rots[i - 1], rots[i], s))
    np.testing.assert_allclose(out["normalized_frames"][:, :3, :3], np.stack(ref), atol=1e-5)


def test_quaternion_round_trip_including_half_turns():
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(200, 3))
    vecs *= (rng.uniform(0, np.pi, 200) / np.linalg.norm(vecs, axis=1))[:, None]
    vecs = np.r_[vecs, [[np.pi, 0, 0], [0, np.pi, 0], [0, 0, np.pi], [0, 0, 0]]]
    R = np.stack([_rv(v) for v in vecs])
    np.testing.assert_allclose(quat_to_matrix(matrix_to_quat(R)), R, atol=1e-10)
    q = matrix_to_quat(R[:2])
    mid = slerp(q[:1], -q[1:2], np.array([0.0]))  # sign flip: shortest arc, starts at q0
    np.testing.assert_allclose(quat_to_matrix(mid)[0], R[0], atol=1e-10)


def test_bad_step():
    with pytest.raises(ValueError):
        normalize_flow(*_inputs([[0, 0, 0], [1, 0, 0]]), step_mm=0)
