"""A stand-in for the ZED SDK's ``pyzed.sl`` (proprietary, GPU-only, not installable
here), modelled on the calls robocurate makes: enough to run the ZED routes' own logic
(the frame loop, unit conversion, error handling, calibration mapping) in tests. The
"SVO" it opens is an ``.npz`` with ``depth`` (frames, H, W) in metres and the calibration.
Not a product feature: the real SDK runs in the ZED image."""

from __future__ import annotations

import sys
import types
from enum import Enum
from pathlib import Path
from types import SimpleNamespace

import numpy as np


class ERROR_CODE(Enum):
    SUCCESS = 0
    FAILURE = 1
    INVALID_SVO_FILE = 2
    END_OF_SVOFILE_REACHED = 3
    CORRUPTED_FRAME = 4


class UNIT(Enum):
    METER = 0


class DEPTH_MODE(Enum):
    NONE = 0
    NEURAL = 1


class MEASURE(Enum):
    DEPTH = 0


class InitParameters:
    def __init__(self):
        self.svo_path = None
        self.sdk_gpu_id = -1
        self.depth_minimum_distance = -1.0
        self.coordinate_units = None

    def set_from_svo_file(self, path: str) -> None:
        self.svo_path = path


class RuntimeParameters:
    pass


class Mat:
    def __init__(self):
        self._data = None

    def get_data(self):
        return self._data


class Camera:
    opened: list[InitParameters] = []  # what tests inspect

    def open(self, init: InitParameters) -> ERROR_CODE:
        try:
            self._svo = np.load(init.svo_path)
            self._depth = self._svo["depth"]
        except (OSError, ValueError, KeyError):
            return ERROR_CODE.INVALID_SVO_FILE
        Camera.opened.append(init)
        self._init = init
        self._i = -1
        return ERROR_CODE.SUCCESS

    def get_camera_information(self):
        s = self._svo
        left = SimpleNamespace(fx=float(s["fx"]), fy=float(s["fy"]), cx=float(s["cx"]),
                               cy=float(s["cy"]), disto=[float(v) for v in s["disto"]])
        # The SDK reports lengths in the unit the camera was opened with.
        per_mm = 1e-3 if self._init.coordinate_units == UNIT.METER else 1.0
        calib = SimpleNamespace(left_cam=left,
                                get_camera_baseline=lambda: float(s["baseline_mm"]) * per_mm)
        h, w = self._depth.shape[1:]
        conf = SimpleNamespace(calibration_parameters=calib, fps=float(s["fps"]),
                               resolution=SimpleNamespace(width=w, height=h))
        return SimpleNamespace(camera_configuration=conf)

    def grab(self, runtime) -> ERROR_CODE:
        self._i += 1
        if self._i == int(self._svo.get("corrupt_at", -1)):
            return ERROR_CODE.CORRUPTED_FRAME
        if self._i >= len(self._depth):
            return ERROR_CODE.END_OF_SVOFILE_REACHED
        return ERROR_CODE.SUCCESS

    def retrieve_measure(self, mat: Mat, measure) -> ERROR_CODE:
        mat._data = self._depth[self._i]
        return ERROR_CODE.SUCCESS

    def close(self) -> None:
        pass


def install(monkeypatch) -> types.ModuleType:
    """Make ``import pyzed.sl`` find this module for the rest of a test."""
    pkg = types.ModuleType("pyzed")
    sl = sys.modules[__name__]
    pkg.sl = sl
    monkeypatch.setitem(sys.modules, "pyzed", pkg)
    monkeypatch.setitem(sys.modules, "pyzed.sl", sl)
    Camera.opened = []
    return sl


def write_svo(path: Path, depth_m: np.ndarray, *, fps: float = 15.0, corrupt_at: int = -1,
              fx: float = 530.0, baseline_mm: float = 120.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:  # np.savez would append .npz to the name
        np.savez(fh, depth=depth_m.astype(np.float32), fx=fx, fy=fx + 1, cx=320.5, cy=180.25,
                 disto=np.array([0.01, -0.02, 0.001, 0.002, 0.003]), baseline_mm=baseline_mm,
                 fps=fps, corrupt_at=corrupt_at)
    return path
