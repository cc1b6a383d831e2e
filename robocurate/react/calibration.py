"""Calibration for the sensor projection overlay (reference 1.6 ``draw_projection_overlay``).

One JSON file per dataset, by default ``ROOT/calibration.json``::

    {"schema": "robocurate.react.calibration/1",
     "units": "mm",
     "cameras": {"<realsense serial>": {"name": "cam0", "fx", "fy", "ppx", "ppy",
                                        "width": 640, "height": 480,
                                        "T_mocap_to_cam": [[4 x 4]]}, ...},
     "sensors": {"left":  {"gel_center_in_rigid_mm": [x, y, z]},
                 "right": {"gel_center_in_rigid_mm": [x, y, z]}}}

Cameras are keyed by serial (``metadata.realsense_serials`` maps the H5 camera index to
it), so re-plugging cameras in another order keeps the right extrinsics. Intrinsics are
pinhole on the camera's native ``width x height`` (640x480 for the D415) and are scaled to
whatever size the image is drawn at. ``T_mocap_to_cam`` maps homogeneous mocap points in
millimetres to the OpenCV camera frame (x right, y down, z forward), also millimetres:
OptiTrack poses are in metres and are multiplied by 1000 (``pose7_to_T``).

Pure library: no Prefect.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robocurate.io.atomic import atomic_write_json

__all__ = [
    "CALIBRATION_NAME",
    "CalibrationError",
    "Calibration",
    "CameraCalibration",
    "SCHEMA",
    "default_calibration_path",
    "load_calibration",
    "pose7_to_T",
    "project_mm",
    "save_calibration",
    "write_sample_calibration",
]

SCHEMA = "robocurate.react.calibration/1"
CALIBRATION_NAME = "calibration.json"


class CalibrationError(ValueError):
    """A calibration file is missing, not JSON, or does not have the documented fields."""


@dataclass(frozen=True)
class CameraCalibration:
    serial: str
    fx: float
    fy: float
    ppx: float
    ppy: float
    width: int
    height: int
    T_mocap_to_cam: np.ndarray  # (4, 4) float64, mm -> mm
    name: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "fx": self.fx, "fy": self.fy, "ppx": self.ppx,
                "ppy": self.ppy, "width": self.width, "height": self.height,
                "T_mocap_to_cam": np.asarray(self.T_mocap_to_cam, float).round(6).tolist()}


@dataclass(frozen=True)
class Calibration:
    cameras: dict[str, CameraCalibration] = field(default_factory=dict)
    gel_center_in_rigid_mm: dict[str, np.ndarray] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "schema": SCHEMA,
            "units": "mm",
            "cameras": {s: c.to_json() for s, c in sorted(self.cameras.items())},
            "sensors": {side: {"gel_center_in_rigid_mm": np.asarray(v, float).round(6).tolist()}
                        for side, v in sorted(self.gel_center_in_rigid_mm.items())},
        }


def default_calibration_path(root: str | os.PathLike) -> Path:
    return Path(root) / CALIBRATION_NAME


def load_calibration(path: str | os.PathLike) -> Calibration:
    """Parse and validate a calibration file; raises :class:`CalibrationError` naming the
    file and the offending field (callers turn it into a finding)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"{path}: cannot read calibration JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise CalibrationError(f"{path}: top level must be an object")
    return _parse(doc, str(path))


def save_calibration(cal: Calibration, path: str | os.PathLike) -> Path:
    path = Path(path)
    atomic_write_json(path, cal.to_json())
    return path


def _num(where: str, d: dict, key: str) -> float:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise CalibrationError(f"{where}: '{key}' must be a finite number, got {v!r}")
    return float(v)


def _parse(doc: dict, where: str) -> Calibration:
    cams_doc = doc.get("cameras")
    if not isinstance(cams_doc, dict) or not cams_doc:
        raise CalibrationError(f"{where}: 'cameras' must be a non-empty object keyed by serial")
    cameras = {}
    for serial, c in cams_doc.items():
        w = f"{where}: cameras.{serial}"
        if not isinstance(c, dict):
            raise CalibrationError(f"{w} must be an object")
        fx, fy, ppx, ppy = (_num(w, c, k) for k in ("fx", "fy", "ppx", "ppy"))
        width, height = _num(w, c, "width"), _num(w, c, "height")
        if fx <= 0 or fy <= 0 or width < 1 or height < 1:
            raise CalibrationError(f"{w}: fx, fy, width, height must be positive")
        try:
            T = np.asarray(c.get("T_mocap_to_cam"), dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise CalibrationError(f"{w}: T_mocap_to_cam is not numeric: {exc}") from exc
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise CalibrationError(f"{w}: T_mocap_to_cam must be a finite 4x4 matrix")
        cameras[str(serial)] = CameraCalibration(str(serial), fx, fy, ppx, ppy, int(width),
                                                 int(height), T, str(c.get("name", "")))
    sensors_doc = doc.get("sensors", {})
    if not isinstance(sensors_doc, dict):
        raise CalibrationError(f"{where}: 'sensors' must be an object")
    gel = {}
    for side, s in sensors_doc.items():
        try:
            v = np.asarray(s["gel_center_in_rigid_mm"], dtype=np.float64)
        except (TypeError, KeyError, ValueError) as exc:
            raise CalibrationError(
                f"{where}: sensors.{side}.gel_center_in_rigid_mm missing or not numeric") from exc
        if v.shape != (3,) or not np.all(np.isfinite(v)):
            raise CalibrationError(f"{where}: sensors.{side}.gel_center_in_rigid_mm must be 3 numbers")
        gel[str(side)] = v
    return Calibration(cameras, gel)


# ------------------------------------------------------------------------- geometry


def pose7_to_T(pose7) -> np.ndarray | None:
    """``[x, y, z, qx, qy, qz, qw]`` (metres) -> 4x4 rigid->mocap transform in mm.

    None for "no data": an all-zero pose (inactive side) or a degenerate quaternion.
    """
    p = np.asarray(pose7, dtype=np.float64)
    if p.shape != (7,) or not np.all(np.isfinite(p)):
        return None
    q = p[3:]
    n = float(np.linalg.norm(q))
    if n < 1e-9:
        return None
    x, y, z, w = q / n
    R = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = p[:3] * 1000.0
    return T


def project_mm(cam: CameraCalibration, pts_mocap_mm: np.ndarray,
               size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole projection of (N, 3) mocap points (mm) into an image of ``size`` = (w, h).

    Returns ((N, 2) float pixel coordinates, (N,) bool "in front of the camera").
    ``size`` defaults to the camera's native resolution; intrinsics scale linearly.
    """
    pts = np.asarray(pts_mocap_mm, dtype=np.float64).reshape(-1, 3)
    pc = pts @ cam.T_mocap_to_cam[:3, :3].T + cam.T_mocap_to_cam[:3, 3]
    z = pc[:, 2]
    front = z > 1.0  # > 1 mm: behind or on the camera plane cannot be drawn
    zs = np.where(front, z, 1.0)
    u = cam.fx * pc[:, 0] / zs + cam.ppx
    v = cam.fy * pc[:, 1] / zs + cam.ppy
    if size is not None:
        u = u * (size[0] / cam.width)
        v = v * (size[1] / cam.height)
    return np.stack([u, v], axis=1), front


# ------------------------------------------------------------------------- sample file


def _look_at(eye_mm, target_mm, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """T_mocap_to_cam of an OpenCV camera at ``eye`` looking at ``target`` (mocap z up)."""
    eye, target = np.asarray(eye_mm, float), np.asarray(target_mm, float)
    fwd = target - eye
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, np.asarray(up, float))
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    R = np.stack([right, down, fwd])  # rows: camera axes in mocap coordinates
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = -R @ eye
    return T


# The synthetic episodes of ``robocurate.samples.react`` (``_poses``) move each sensor
# body from x = +-150 mm, z = 900 mm down to x = +-30 mm, z = 780 mm above a work piece at
# z ~ 720 mm, y ~ 0, only yawing about the mocap z axis (z up). The gel sits 40 mm below
# the rigid-body origin, so every gel centre stays inside x in [-160, 160], z in
# [740, 860]. Three D415-like cameras (640x480, f = 615 px) look at (0, 0, 800) mm from
# about 1 m away: cam1 on the sensor_left (+x) side, cam2 in the middle, cam0 on the
# sensor_right (-x) side, so "left | middle | right" tiles show what their names say.
_SAMPLE_TARGET_MM = (0.0, 0.0, 800.0)
_SAMPLE_EYES_MM = {0: (-600.0, -600.0, 1300.0), 1: (600.0, -600.0, 1300.0),
                   2: (0.0, -850.0, 1300.0)}
_SAMPLE_GEL_MM = (0.0, 0.0, -40.0)


def sample_calibration(serials: tuple[str, str, str] | list[str] | None = None) -> Calibration:
    """A calibration consistent with the synthetic sample recordings (see above)."""
    if serials is None:
        from robocurate.samples.react import REALSENSE_SERIALS as serials
    cams = {}
    for idx, serial in enumerate(serials):
        cams[str(serial)] = CameraCalibration(
            str(serial), 615.0, 615.0, 320.0, 240.0, 640, 480,
            _look_at(_SAMPLE_EYES_MM[idx], _SAMPLE_TARGET_MM), name=f"cam{idx}")
    gel = {side: np.array(_SAMPLE_GEL_MM) for side in ("left", "right")}
    return Calibration(cams, gel)


def write_sample_calibration(root: str | os.PathLike) -> Path:
    """Write ``ROOT/calibration.json`` matching ``robocurate.samples.react``'s episodes."""
    return save_calibration(sample_calibration(), default_calibration_path(root))
