"""Robotiq 2F-85 contact tracks against an independent hand computation (rotations from
OpenCV's Rodrigues formula, explicit 4x4 products)."""

import cv2
import numpy as np
import pytest

from robocurate.droid import kinematics as k


def _rv(v):
    return cv2.Rodrigues(np.asarray(v, dtype=np.float64))[0]


def _euler_xyz(a):
    """Extrinsic x, then y, then z: Rz @ Ry @ Rx."""
    return _rv([0, 0, a[2]]) @ _rv([0, a[1], 0]) @ _rv([a[0], 0, 0])


def _hand_T(rot, t):
    T = np.eye(4)
    T[:3, :3] = rot
    T[:3, 3] = t
    return T


def test_euler_matches_scipy_extrinsic_xyz_and_round_trips():
    rng = np.random.default_rng(0)
    a = rng.uniform(-np.pi, np.pi, (50, 3))
    a[:, 1] = rng.uniform(-1.5, 1.5, 50)
    R = k.euler_xyz_to_matrix(a)
    np.testing.assert_allclose(R, np.stack([_euler_xyz(x) for x in a]), atol=1e-12)
    np.testing.assert_allclose(k.euler_xyz_to_matrix(k.matrix_to_euler_xyz(R)), R, atol=1e-12)


@pytest.mark.parametrize("g", [0.0, 0.37, 1.0])
def test_tracks_match_hand_computed_kinematics(g):
    cart = np.array([[0.52, -0.11, 0.31, 3.05, 0.12, -0.4]])
    out = k.contact_tracks(cart, np.array([g]), num_points_per_finger=7, seed=3)
    # Independent chain: scipy rotations, explicit 4x4 products.
    R_ee = _euler_xyz(cart[0, 3:]) @ _rv([0, 0, np.pi / 2])
    T_ee = _hand_T(R_ee, cart[0, :3])
    th = 0.8 * g
    ry = lambda a: _rv([0, a, 0])  # noqa: E731
    rz_pi = _rv([0, 0, np.pi])
    T_l = T_ee @ _hand_T(ry(-th), [0.0127, 0, 0.0693]) @ _hand_T(ry(th), [0.03458531, 0, 0.04549702])
    T_r = T_ee @ _hand_T(rz_pi @ ry(-th), [-0.0127, 0, 0.0693]) @ _hand_T(
        ry(th), [0.03410605, 0, 0.04585739])
    local = out["contact_points_local"]
    homo = np.c_[local, np.ones(len(local))]
    left = (T_l @ homo.T).T[:, :3]
    right = (T_r @ homo.T).T[:, :3]
    np.testing.assert_allclose(out["tracks_3d"][0, :7], left, atol=1e-6)
    np.testing.assert_allclose(out["tracks_3d"][0, 7:], right, atol=1e-6)
    np.testing.assert_allclose(out["gripper_poses"][0], T_ee, atol=1e-12)
    c = np.r_[left, right].mean(0)
    np.testing.assert_allclose(out["contact_centroids"][0], c, atol=1e-6)
    np.testing.assert_allclose(out["contact_frames"][0][:3, :3], R_ee, atol=1e-6)
    np.testing.assert_allclose(out["contact_frames"][0][:3, 3], c, atol=1e-6)
    np.testing.assert_allclose(out["left_contact_frames"][0][:3, 3], left.mean(0), atol=1e-6)
    np.testing.assert_allclose(out["right_contact_frames"][0][:3, :3], T_r[:3, :3], atol=1e-6)
    assert out["tracks_3d"].dtype == np.float32 and out["gripper_poses"].dtype == np.float64


def test_fingers_stay_parallel_and_close_with_gripper_position():
    g = np.linspace(0, 1, 11)
    cart = np.tile([0.5, 0, 0.3, np.pi, 0, 0], (11, 1))
    out = k.contact_tracks(cart, g, num_points_per_finger=20)
    # Parallel linkage: each finger keeps the gripper's orientation.
    np.testing.assert_allclose(out["left_contact_frames"][:, :3, :3],
                               out["gripper_poses"][:, :3, :3].astype(np.float32), atol=1e-6)
    gap = np.linalg.norm(out["left_contact_frames"][:, :3, 3] - out["right_contact_frames"][:, :3, 3], axis=1)
    assert np.all(np.diff(gap[:9]) < 0)  # closing brings the pads together
    assert 0.07 < gap[0] < 0.09  # open: about the 2F-85's 85 mm stroke


def test_contact_points_deterministic_spread_and_on_the_pad():
    a = k.contact_points_local(480, seed=1)
    assert a.shape == (480, 3)
    np.testing.assert_array_equal(a, k.contact_points_local(480, seed=1))
    assert not np.array_equal(a, k.contact_points_local(480, seed=2))
    assert np.all(a[:, 0] == k.PAD_X)
    assert a[:, 1].min() >= k.PAD_Y[0] and a[:, 1].max() <= k.PAD_Y[1]
    assert a[:, 2].min() >= k.PAD_Z[0] and a[:, 2].max() <= k.PAD_Z[1]
    # Stratified: every cell of a coarse 4x4 grid over the pad holds points.
    hy = np.histogram2d(a[:, 1], a[:, 2], bins=4, range=[k.PAD_Y, k.PAD_Z])[0]
    assert hy.min() >= 15
    with pytest.raises(ValueError):
        k.contact_points_local(0)
