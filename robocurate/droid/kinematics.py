"""Robotiq 2F-85 contact tracks from DROID's observed robot state.

Poses
-----
DROID stores ``observation/robot_state/cartesian_position`` as ``[x, y, z, rx, ry, rz]``:
the flange (polymetis ``panda_link8``) in the robot base frame, orientation as scipy
``from_euler("xyz")`` angles, i.e. *extrinsic* x-y-z rotations, ``R = Rz(rz) Ry(ry) Rx(rx)``.
``gripper_poses[t] = [R @ Rz(90 deg) | p]``: the same "R_fix" the original pipeline
applies so the Robotiq base frame's x axis is the closing direction. Like the original,
no translation is added between the flange and ``robotiq_85_base_link`` (``flange_offset_m``
lets a caller add one along the gripper z axis; the default 0 keeps the original numbers).

Finger kinematics
-----------------
The inner knuckle / inner finger chain of the 2F-85 URDF, with the finger angle mapped
linearly from DROID's gripper position (0 = open, 1 = closed) as the original does:
``theta = 0.8 * gripper_position`` (rad)::

    T_left  = T_ee . [Ry(-theta), (0.0127, 0, 0.0693)] . [Ry(+theta), (0.03458531, 0, 0.04549702)]
    T_right = T_ee . [Rz(pi) Ry(-theta), (-0.0127, 0, 0.0693)] . [Ry(+theta), (0.03410605, 0, 0.04585739)]

The two rotations cancel, so each inner finger stays parallel to the gripper (a parallel
linkage) while its origin swings on the knuckle's arc.

Contact-surface model (differs from the original on purpose)
------------------------------------------------------------
The original sampled 480 points *randomly and unseeded* from a mesh face selection that
covered both broad faces of the finger plate. Here the contact surface is the inner pad
of each finger, modelled as a flat rectangle in the inner-finger link frame:

* plane ``x = PAD_X = -0.0078 m`` (the finger mesh's innermost face, facing the other
  finger; the right finger's frame is turned by pi about z, so the same local points are
  the mirrored pad of the right finger);
* width ``y in [-0.011, 0.011] m`` (the finger's full 22 mm width);
* height ``z in [0.0045, 0.0440] m`` (the distal part of the finger that touches objects;
  the top of the mesh is at 0.0440).

``P`` points are spread over the rectangle by *jittered stratified sampling*: the pad is
cut into a grid of at least ``P`` near-square cells, ``P`` cells are chosen and one point is
placed uniformly inside each, all from ``numpy.random.default_rng(seed)``. The points are
area-uniform, cover the pad evenly (no clumps) and are identical for the same
``(P, seed)``. Left and right fingers use the same local points. ``tracks_3d[t]`` is
``concat(left, right)``: the first ``P`` rows are the left finger.
"""

from __future__ import annotations

import numpy as np

GRIPPER_MAX_ANGLE = 0.8  # rad per unit of DROID gripper_position, as in the original
PAD_X = -0.0078
PAD_Y = (-0.011, 0.011)
PAD_Z = (0.0045, 0.0440)
LEFT_KNUCKLE = (0.0127, 0.0, 0.0693)
LEFT_FINGER = (0.03458531, 0.0, 0.04549702)
RIGHT_KNUCKLE = (-0.0127, 0.0, 0.0693)
RIGHT_FINGER = (0.03410605, 0.0, 0.04585739)


def rot_x(a):
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1),
                     np.stack([z, s, c], -1)], -2)


def rot_y(a):
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1),
                     np.stack([-s, z, c], -1)], -2)


def rot_z(a):
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1),
                     np.stack([z, z, o], -1)], -2)


def euler_xyz_to_matrix(angles) -> np.ndarray:
    """scipy ``Rotation.from_euler("xyz", a).as_matrix()`` (extrinsic), vectorised [..., 3]."""
    a = np.asarray(angles, dtype=np.float64)
    return rot_z(a[..., 2]) @ rot_y(a[..., 1]) @ rot_x(a[..., 0])


def matrix_to_euler_xyz(R) -> np.ndarray:
    """Inverse of :func:`euler_xyz_to_matrix` (angles in (-pi, pi], pitch in [-pi/2, pi/2])."""
    R = np.asarray(R, dtype=np.float64)
    pitch = np.arcsin(np.clip(-R[..., 2, 0], -1.0, 1.0))
    roll = np.arctan2(R[..., 2, 1], R[..., 2, 2])
    yaw = np.arctan2(R[..., 1, 0], R[..., 0, 0])
    return np.stack([roll, pitch, yaw], -1)


def pose6_to_matrix(pose6) -> np.ndarray:
    """``[x, y, z, euler xyz]`` -> 4x4 (vectorised over leading axes), no R_fix."""
    p = np.asarray(pose6, dtype=np.float64)
    T = np.zeros(p.shape[:-1] + (4, 4))
    T[..., :3, :3] = euler_xyz_to_matrix(p[..., 3:6])
    T[..., :3, 3] = p[..., :3]
    T[..., 3, 3] = 1.0
    return T


def matrix_to_pose6(T) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    return np.concatenate([T[..., :3, 3], matrix_to_euler_xyz(T[..., :3, :3])], -1)


R_FIX = rot_z(np.pi / 2)


def gripper_poses(cartesian: np.ndarray, flange_offset_m: float = 0.0) -> np.ndarray:
    """[T,6] DROID cartesian state -> [T,4,4] float64 gripper (Robotiq base) poses."""
    T = pose6_to_matrix(cartesian)
    T[..., :3, :3] = T[..., :3, :3] @ R_FIX
    if flange_offset_m:
        T[..., :3, 3] += flange_offset_m * T[..., :3, 2]
    return T


def _joint(R: np.ndarray, t) -> np.ndarray:
    out = np.zeros(R.shape[:-2] + (4, 4))
    out[..., :3, :3] = R
    out[..., :3, 3] = t
    out[..., 3, 3] = 1.0
    return out


def finger_transforms(poses: np.ndarray, gripper_position: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """World poses [T,4,4] of the left and right inner-finger links."""
    theta = GRIPPER_MAX_ANGLE * np.asarray(gripper_position, dtype=np.float64)
    knuckle = rot_y(-theta)
    finger = _joint(rot_y(theta), np.zeros(3))
    left_f, right_f = finger.copy(), finger.copy()
    left_f[..., :3, 3] = LEFT_FINGER
    right_f[..., :3, 3] = RIGHT_FINGER
    left = poses @ _joint(knuckle, LEFT_KNUCKLE) @ left_f
    right = poses @ _joint(rot_z(np.pi) @ knuckle, RIGHT_KNUCKLE) @ right_f
    return left, right


def contact_points_local(num_points: int, seed: int = 0) -> np.ndarray:
    """[P,3] float64 points on the inner pad, in the inner-finger frame (see module doc)."""
    if num_points < 1:
        raise ValueError("num_points must be >= 1")
    ly, lz = PAD_Y[1] - PAD_Y[0], PAD_Z[1] - PAD_Z[0]
    nz = max(1, int(round(np.sqrt(num_points * lz / ly))))
    ny = int(np.ceil(num_points / nz))
    rng = np.random.default_rng(seed)
    cells = np.sort(rng.choice(ny * nz, size=num_points, replace=False))
    iy, iz = cells % ny, cells // ny
    jitter = rng.random((num_points, 2))
    y = PAD_Y[0] + (iy + jitter[:, 0]) * (ly / ny)
    z = PAD_Z[0] + (iz + jitter[:, 1]) * (lz / nz)
    return np.stack([np.full(num_points, PAD_X), y, z], -1)


def _apply(T: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """[T,4,4] x [P,3] -> [T,P,3]."""
    return np.einsum("tij,pj->tpi", T[:, :3, :3], pts) + T[:, None, :3, 3]


def _frames(R: np.ndarray, origin: np.ndarray) -> np.ndarray:
    out = np.zeros(R.shape[:-2] + (4, 4), dtype=np.float32)
    out[..., :3, :3] = R
    out[..., :3, 3] = origin
    out[..., 3, 3] = 1.0
    return out


def contact_tracks(cartesian: np.ndarray, gripper_position: np.ndarray, *,
                   num_points_per_finger: int = 480, seed: int = 0,
                   flange_offset_m: float = 0.0) -> dict[str, np.ndarray]:
    """Everything tracks.npz holds about the gripper, with the original's dtypes."""
    cartesian = np.asarray(cartesian, dtype=np.float64)
    poses = gripper_poses(cartesian, flange_offset_m)
    left, right = finger_transforms(poses, gripper_position)
    local = contact_points_local(num_points_per_finger, seed)
    pl, pr = _apply(left, local), _apply(right, local)
    tracks = np.concatenate([pl, pr], axis=1)
    centroids = tracks.mean(axis=1)
    return {
        "tracks_3d": tracks.astype(np.float32),
        "contact_points_local": local,
        "gripper_poses": poses,
        "contact_centroids": centroids.astype(np.float32),
        "contact_frames": _frames(poses[:, :3, :3], centroids),
        "left_contact_frames": _frames(left[:, :3, :3], pl.mean(axis=1)),
        "right_contact_frames": _frames(right[:, :3, :3], pr.mean(axis=1)),
    }
