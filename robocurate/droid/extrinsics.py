"""Camera poses (camera -> robot base, OpenCV camera axes) for one DROID episode.

External cameras are static: one 4x4 each, from the trajectory's own
``observation/camera_extrinsics/<serial>_left`` (its first finite row) or from a superset
calibration file (``{episode key: {serial: [x, y, z, euler xyz]}}``, digit-only keys kept,
as the original). The wrist camera moves with the end effector, so it gets one pose per
step, computed through the end effector, in order of preference:

1. ``<wrist>_left_gripper_offset`` (DROID's camera->flange calibration):
   ``T_world_cam[t] = T_flange[t] . T_offset[t]`` (DROID's ``change_pose_frame``);
2. the camera's pose at step 0 (``<wrist>_left[0]`` in the h5, else the metadata's
   ``wrist_cam_extrinsics``), carried by the end effector:
   ``T_world_cam[t] = T_ee[t] . inv(T_ee[0]) . T_cam0`` (the original's method).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robocurate.droid.kinematics import pose6_to_matrix


@dataclass
class CameraSet:
    wrist: str | None
    externals: list[str]
    source: str  # "metadata" | "h5"

    @property
    def all(self) -> list[str]:
        return ([self.wrist] if self.wrist else []) + list(self.externals)


def _serial(v) -> str | None:
    if v is None:
        return None
    s = str(v).strip()
    return s if s and s.lower() not in ("none", "null", "n/a") else None


def cameras_from_metadata(meta: dict) -> CameraSet | None:
    """The serials named in metadata_*.json, or None when it names none."""
    wrist = _serial(meta.get("wrist_cam_serial"))
    ext = [s for s in (_serial(meta.get("ext1_cam_serial")), _serial(meta.get("ext2_cam_serial")))
           if s]
    if not wrist and not ext:
        return None
    return CameraSet(wrist, ext, "metadata")


def cameras_from_h5(camera_type: dict[str, np.ndarray]) -> CameraSet | None:
    """DROID's own rule: wrist = camera_type[serial][0] == 0, the rest sorted."""
    if not camera_type:
        return None
    wrist = [s for s, v in camera_type.items() if len(v) and int(v[0]) == 0]
    ext = sorted(s for s in camera_type if s not in wrist)
    return CameraSet(wrist[0] if wrist else None, ext, "h5")


def _first_finite(rows: np.ndarray) -> np.ndarray | None:
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim == 1:
        rows = rows[None]
    ok = np.all(np.isfinite(rows), axis=-1) if rows.size else np.zeros(0, bool)
    return rows[np.argmax(ok)] if ok.any() else None


@dataclass
class Extrinsics:
    num_frames: int
    external: dict[str, np.ndarray] = field(default_factory=dict)
    wrist_serial: str | None = None
    wrist: np.ndarray | None = None  # [T,4,4]
    source: str = "h5"
    wrist_method: str | None = None
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (serial, rule, msg)

    def pose(self, serial: str) -> np.ndarray | None:
        if serial == self.wrist_serial:
            return self.wrist
        return self.external.get(serial)

    def npz_arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {"num_frames": np.int64(self.num_frames)}
        for s, T in self.external.items():
            out[f"external_{s}"] = np.asarray(T, dtype=np.float64)
        if self.wrist is not None:
            out["wrist_extrinsics"] = np.asarray(self.wrist, dtype=np.float64)
            out["wrist_serial"] = np.str_(self.wrist_serial)
        return out


def superset_cameras(entry: dict) -> dict[str, np.ndarray]:
    """{serial: 4x4} of a superset entry: digit-only keys with a 6-vector."""
    out = {}
    for k, v in (entry or {}).items():
        if str(k).isdigit() and isinstance(v, (list, tuple)) and len(v) == 6:
            try:
                out[str(k)] = pose6_to_matrix(np.asarray(v, dtype=np.float64))
            except (TypeError, ValueError):
                continue
    return out


def compute_extrinsics(cams: CameraSet, num_frames: int, flange_poses: np.ndarray,
                       ee_poses: np.ndarray, camera_extrinsics: dict[str, np.ndarray],
                       metadata: dict | None = None, superset_entry: dict | None = None
                       ) -> Extrinsics:
    """``flange_poses``: cartesian state as 4x4 without R_fix; ``ee_poses``: gripper poses."""
    ext = Extrinsics(num_frames, source="superset" if superset_entry is not None else "h5")
    metadata = metadata or {}
    sup = superset_cameras(superset_entry) if superset_entry is not None else {}
    for s in cams.externals:
        if superset_entry is not None:
            if s in sup:
                ext.external[s] = sup[s]
            else:
                ext.problems.append((s, "no_extrinsics", "camera not in the superset entry"))
            continue
        row = _first_finite(camera_extrinsics.get(f"{s}_left", np.zeros((0, 6))))
        if row is None:
            ext.problems.append((s, "no_extrinsics",
                                 f"no finite observation/camera_extrinsics/{s}_left"))
        else:
            ext.external[s] = pose6_to_matrix(row)
    w = cams.wrist
    if not w:
        return ext
    offset = camera_extrinsics.get(f"{w}_left_gripper_offset")
    if offset is not None and len(offset) == num_frames and np.all(np.isfinite(offset)):
        ext.wrist = flange_poses @ pose6_to_matrix(offset)
        ext.wrist_method = "gripper_offset"
    else:
        cam0 = _first_finite(camera_extrinsics.get(f"{w}_left", np.zeros((0, 6))))
        method = "h5_step0"
        if cam0 is None and isinstance(metadata.get("wrist_cam_extrinsics"), list) \
                and len(metadata["wrist_cam_extrinsics"]) == 6:
            cam0, method = np.asarray(metadata["wrist_cam_extrinsics"], float), "metadata_step0"
        if cam0 is None or num_frames == 0:
            ext.problems.append((w, "no_extrinsics", "no wrist camera pose in the h5 or metadata"))
            return ext
        T_ee_cam = np.linalg.inv(ee_poses[0]) @ pose6_to_matrix(cam0)
        ext.wrist = ee_poses @ T_ee_cam
        ext.wrist_method = method
    ext.wrist_serial = w
    return ext
