"""2D projections against OpenCV's projectPoints."""

import cv2
import numpy as np

from robocurate.droid.projection import (fraction_inside, fraction_valid, intrinsic_matrix,
                                         project_tracks)

INTR = {"fx": 530.0, "fy": 529.0, "cx": 641.0, "cy": 358.0, "width": 1280, "height": 720}


def _pose(rvec, t):
    T = np.eye(4)
    T[:3, :3] = cv2.Rodrigues(np.asarray(rvec, float))[0]
    T[:3, 3] = t
    return T


def _cv(points, T_world_cam, K):
    T_cw = np.linalg.inv(T_world_cam)
    rvec = cv2.Rodrigues(T_cw[:3, :3])[0]
    uv, _ = cv2.projectPoints(points.astype(np.float64), rvec, T_cw[:3, 3], K, np.zeros(5))
    return uv[:, 0]


def test_static_camera_matches_projectpoints_and_nan_behind():
    rng = np.random.default_rng(0)
    T_wc = _pose([2.0, 0.1, -0.3], [0.2, 0.5, 0.6])
    K = intrinsic_matrix(INTR)
    pts = rng.uniform([-0.2, -0.4, 0.0], [0.9, 0.4, 0.6], (4, 50, 3))
    uv = project_tracks(pts, T_wc, K, min_depth=0.1)
    z = (np.linalg.inv(T_wc) @ np.c_[pts.reshape(-1, 3), np.ones(200)].T)[2].reshape(4, 50)
    valid = z > 0.1
    assert valid.any() and (~valid).any()  # both cases are exercised
    for t in range(4):
        ref = _cv(pts[t], T_wc, K)
        np.testing.assert_allclose(uv[t][valid[t]], ref[valid[t]], rtol=1e-5, atol=1e-3)
    assert np.isnan(uv[~valid]).all()
    assert uv.dtype == np.float32 and uv.shape == (4, 50, 2)


def test_per_frame_camera_and_too_close_points():
    K = intrinsic_matrix(INTR)
    poses = np.stack([_pose([0, 0, 0.1 * t], [0.01 * t, 0, 0]) for t in range(3)])
    pts = np.array([[[0.0, 0.0, 0.05], [0.1, 0.05, 0.5], [0.0, 0.0, -0.5]]] * 3)
    uv = project_tracks(pts, poses, K, min_depth=0.1)
    assert np.isnan(uv[:, 0]).all() and np.isnan(uv[:, 2]).all()  # too close; behind
    for t in range(3):
        np.testing.assert_allclose(uv[t, 1], _cv(pts[t, 1:2], poses[t], K)[0], atol=1e-3)


def test_fractions():
    uv = np.array([[[10, 10], [np.nan, np.nan], [2000, 10], [5, 700]]], np.float32)
    assert fraction_inside(uv, 1280, 720) == 0.5
    assert fraction_valid(uv) == 0.75
    assert fraction_inside(np.zeros((0, 0, 2)), 1, 1) == 0.0
