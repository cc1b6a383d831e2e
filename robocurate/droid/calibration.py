"""Camera intrinsics for DROID episodes, from three sources.

* ``conf``: Stereolabs factory calibration files ``SN<serial>.conf`` (the ZED INI format:
  ``[LEFT_CAM_HD]``/``[RIGHT_CAM_HD]`` with fx, fy, cx, cy, k1, k2, p1, p2, k3, and
  ``[STEREO]`` with Baseline (mm), TY, TZ, CV_*, RX_*, RZ_*). These are raw, unrectified
  parameters while DROID's MP4s are rectified, so they are rectified like the ZED SDK
  does: ``cv2.stereoRectify(K_l, D_l, K_r, D_r, size, R=Rodrigues([RX, CV, RZ]),
  T=[-Baseline, TY, TZ], flags=CALIB_ZERO_DISPARITY, alpha=0)`` and the rectified left
  camera is ``P1[:3, :3]`` with zero distortion; the rectified baseline is
  ``-P2[0, 3] / P2[0, 0]``.
* ``table``: a JSON file mapping each serial to ``{fx, fy, cx, cy, width, height, k1, k2,
  p1, p2, k3}``. Per-episode tables ``{episode_id: {serial: ...}}`` are accepted too, with
  entries either such dicts or the ``[fx, cx, fy, cy]`` lists of the DROID authors'
  ``intrinsics.json`` (note that order; the size is then 1280x720).
* ``zed``: the ZED SDK reading ``recordings/SVO/<serial>.svo`` (rectified left camera, as
  the original). ``pyzed`` is imported only when this source is chosen.
"""

from __future__ import annotations

import configparser
import functools
import json
import os
from pathlib import Path

import numpy as np

SOURCES = ("conf", "table", "zed")
FIELDS = ("fx", "fy", "cx", "cy", "width", "height", "k1", "k2", "p1", "p2", "k3")
RESOLUTIONS = {"2K": (2208, 1242), "FHD": (1920, 1080), "HD": (1280, 720), "VGA": (672, 376)}
DROID_RESOLUTION = "HD"  # DROID opens the ZEDs at HD720


class CalibrationError(ValueError):
    """A camera's intrinsics cannot be had from the chosen source."""


def zed_missing_message() -> str:
    return ("the ZED SDK (pyzed) is not importable here, so --intrinsics-source zed cannot be "
            "used outside the ZED container; use --intrinsics-source conf --calib-dir DIR "
            "(factory SN<serial>.conf files) or --intrinsics-source table --intrinsics-table "
            "FILE (JSON: serial -> fx, fy, cx, cy, width, height, k1, k2, p1, p2, k3)")


def check_source(source: str, *, calib_dir: str | None = None,
                 table_path: str | None = None) -> None:
    """Run-level check before any episode: a wrong choice fails at once with a message."""
    if source not in SOURCES:
        raise ValueError(f"unknown intrinsics source {source!r}; choose from {', '.join(SOURCES)}")
    if source == "conf" and not (calib_dir and Path(calib_dir).is_dir()):
        raise ValueError("--intrinsics-source conf needs --calib-dir DIR holding factory "
                         f"SN<serial>.conf files (got {calib_dir!r})")
    if source == "table":
        if not (table_path and Path(table_path).is_file()):
            raise ValueError("--intrinsics-source table needs --intrinsics-table FILE "
                             f"(got {table_path!r})")
        load_table(table_path)
    if source == "zed":
        try:
            import pyzed.sl  # noqa: F401
        except ImportError:
            raise ValueError(zed_missing_message()) from None


# ------------------------------------------------------------------ factory .conf
def parse_zed_conf(text: str) -> dict[str, dict[str, float]]:
    """Sections -> {lower-case key: float}; values that are not numbers are skipped."""
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    try:
        cp.read_string(text)
    except configparser.Error as exc:
        raise CalibrationError(f"not a ZED calibration file: {exc}") from None
    out: dict[str, dict[str, float]] = {}
    for section in cp.sections():
        vals = {}
        for k, v in cp.items(section):
            try:
                vals[k.lower()] = float(v)
            except ValueError:
                continue
        out[section.upper()] = vals
    return out


def _cam(conf: dict, side: str, res: str) -> tuple[np.ndarray, np.ndarray]:
    sec = conf.get(f"{side}_CAM_{res}")
    if not sec:
        raise CalibrationError(f"no [{side}_CAM_{res}] section")
    try:
        K = np.array([[sec["fx"], 0, sec["cx"]], [0, sec["fy"], sec["cy"]], [0, 0, 1]], float)
    except KeyError as exc:
        raise CalibrationError(f"[{side}_CAM_{res}] lacks {exc.args[0]}") from None
    D = np.array([sec.get(k, 0.0) for k in ("k1", "k2", "p1", "p2", "k3")], float)
    return K, D


def rectified_from_conf(conf: dict, resolution: str = DROID_RESOLUTION) -> dict:
    """Rectified left-camera intrinsics and baseline from a parsed factory calibration."""
    import cv2

    res = resolution.upper()
    if res not in RESOLUTIONS:
        raise CalibrationError(f"unknown ZED resolution {resolution!r}")
    width, height = RESOLUTIONS[res]
    K_l, D_l = _cam(conf, "LEFT", res)
    K_r, D_r = _cam(conf, "RIGHT", res)
    st = conf.get("STEREO", {})
    if "baseline" not in st:
        raise CalibrationError("no Baseline in [STEREO]")
    key = {"2K": "2k", "FHD": "fhd", "HD": "hd", "VGA": "vga"}[res]
    rvec = np.array([st.get(f"rx_{key}", 0.0), st.get(f"cv_{key}", 0.0),
                     st.get(f"rz_{key}", 0.0)], float)
    R, _ = cv2.Rodrigues(rvec)
    T = np.array([[-st["baseline"]], [st.get("ty", 0.0)], [st.get("tz", 0.0)]], float)
    _, _, P1, P2, _, _, _ = cv2.stereoRectify(
        K_l, D_l, K_r, D_r, (width, height), R, T, flags=cv2.CALIB_ZERO_DISPARITY, alpha=0,
        newImageSize=(width, height))
    baseline_mm = abs(P2[0, 3] / P2[0, 0])
    return {"fx": float(P1[0, 0]), "fy": float(P1[1, 1]), "cx": float(P1[0, 2]),
            "cy": float(P1[1, 2]), "width": width, "height": height,
            "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0, "k3": 0.0,
            "baseline_m": float(baseline_mm) / 1000.0, "source": "conf",
            "raw_left": {"fx": float(K_l[0, 0]), "fy": float(K_l[1, 1]),
                         "cx": float(K_l[0, 2]), "cy": float(K_l[1, 2]),
                         "distortion": D_l.tolist()}}


def find_conf(calib_dir: str | Path, serial: str) -> Path | None:
    for name in (f"SN{serial}.conf", f"{serial}.conf"):
        p = Path(calib_dir) / name
        if p.is_file():
            return p
    return None


@functools.lru_cache(maxsize=256)
def _conf_cached(path: str, mtime_ns: int, resolution: str) -> dict:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise CalibrationError(f"cannot read {path}: {exc.strerror}") from None
    return rectified_from_conf(parse_zed_conf(text), resolution)


def conf_intrinsics(calib_dir: str | Path, serial: str,
                    resolution: str = DROID_RESOLUTION) -> dict:
    path = find_conf(calib_dir, serial)
    if path is None:
        raise CalibrationError(f"no SN{serial}.conf in {calib_dir}")
    try:
        rec = _conf_cached(str(path), path.stat().st_mtime_ns, resolution)
    except CalibrationError as exc:
        raise CalibrationError(f"{path.name}: {exc}") from None
    return {**rec, "file": str(path)}


# ------------------------------------------------------------------ table
@functools.lru_cache(maxsize=8)
def _table_cached(path: str, mtime_ns: int) -> dict:
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"intrinsics table {path} is not readable JSON: {exc}") from None
    if not isinstance(table, dict):
        raise ValueError(f"intrinsics table {path} must be a JSON object")
    return table


def load_table(path: str | Path) -> dict:
    return _table_cached(str(path), os.stat(path).st_mtime_ns)


def _from_entry(entry) -> dict:
    if isinstance(entry, dict) and "cameraMatrix" in entry:
        fx, cx, fy, cy = entry["cameraMatrix"]
        entry = {"fx": fx, "cx": cx, "fy": fy, "cy": cy,
                 "width": entry.get("width", 1280), "height": entry.get("height", 720)}
    elif isinstance(entry, (list, tuple)) and len(entry) == 4:
        fx, cx, fy, cy = entry  # the DROID authors' order
        entry = {"fx": fx, "cx": cx, "fy": fy, "cy": cy, "width": 1280, "height": 720}
    if not isinstance(entry, dict):
        raise CalibrationError(f"table entry is neither an object nor [fx, cx, fy, cy]: {entry!r}")
    missing = [k for k in ("fx", "fy", "cx", "cy", "width", "height") if k not in entry]
    if missing:
        raise CalibrationError(f"table entry lacks {', '.join(missing)}")
    try:
        rec = {k: float(entry.get(k, 0.0)) for k in FIELDS}
    except (TypeError, ValueError):
        raise CalibrationError(f"table entry has a non-numeric field: {entry!r}") from None
    rec["width"], rec["height"] = int(rec["width"]), int(rec["height"])
    if "baseline_m" in entry:
        rec["baseline_m"] = float(entry["baseline_m"])
    return rec


def table_intrinsics(table: dict, serial: str, episode_id: str | None = None) -> dict:
    if episode_id and isinstance(table.get(episode_id), dict) and serial in table[episode_id]:
        entry = table[episode_id][serial]
    elif serial in table:
        entry = table[serial]
    else:
        raise CalibrationError(f"camera {serial} is not in the intrinsics table")
    return {**_from_entry(entry), "source": "table"}


# ------------------------------------------------------------------ ZED SDK
def zed_intrinsics(svo_path: str | Path) -> dict:
    """Rectified left-camera intrinsics from an SVO via the ZED SDK (ZED container only)."""
    try:
        import pyzed.sl as sl
    except ImportError:
        raise CalibrationError(zed_missing_message()) from None
    if not Path(svo_path).is_file():
        raise CalibrationError(f"no SVO file {svo_path}")
    init = sl.InitParameters()
    init.set_from_svo_file(str(svo_path))
    init.svo_real_time_mode = False
    init.coordinate_units = sl.UNIT.METER
    init.depth_mode = sl.DEPTH_MODE.NONE
    cam = sl.Camera()
    err = cam.open(init)
    if err != sl.ERROR_CODE.SUCCESS:
        raise CalibrationError(f"ZED SDK cannot open {svo_path}: {err}")
    try:
        conf = cam.get_camera_information().camera_configuration
        calib, res = conf.calibration_parameters, conf.resolution
        left = calib.left_cam
        disto = list(left.disto) + [0.0] * 5
        rec = {"fx": float(left.fx), "fy": float(left.fy), "cx": float(left.cx),
               "cy": float(left.cy), "width": int(res.width), "height": int(res.height),
               **{k: float(disto[i]) for i, k in enumerate(("k1", "k2", "p1", "p2", "k3"))},
               "source": "zed"}
        try:
            rec["baseline_m"] = float(calib.get_camera_baseline())
        except Exception:  # noqa: BLE001 - older SDKs lack the accessor
            pass
        return rec
    finally:
        cam.close()


# ------------------------------------------------------------------ one entry point
def camera_intrinsics(serial: str, *, source: str, episode_dir: str | Path | None = None,
                      episode_id: str | None = None, calib_dir: str | None = None,
                      table_path: str | None = None,
                      resolution: str = DROID_RESOLUTION) -> dict:
    """Intrinsics of one camera (``CalibrationError`` when this camera has none)."""
    if source == "conf":
        return conf_intrinsics(calib_dir, serial, resolution)
    if source == "table":
        return table_intrinsics(load_table(table_path), serial, episode_id)
    if source == "zed":
        return zed_intrinsics(Path(episode_dir) / "recordings" / "SVO" / f"{serial}.svo")
    raise ValueError(f"unknown intrinsics source {source!r}")


def intrinsics_json(rec: dict) -> dict:
    """The record as written to recordings/<serial>/intrinsics.json (the original's fields)."""
    out = {k: float(rec.get(k, 0.0)) for k in FIELDS}
    out["width"], out["height"] = int(rec["width"]), int(rec["height"])
    return out


def stereo_calibration(rec: dict, baseline_m: float | None = None) -> dict:
    """What the depth step needs: left-camera intrinsics, distortion and the baseline."""
    b = rec.get("baseline_m", baseline_m)
    return {"fx": float(rec["fx"]), "fy": float(rec["fy"]), "cx": float(rec["cx"]),
            "cy": float(rec["cy"]), "width": int(rec["width"]), "height": int(rec["height"]),
            "distortion": [float(rec.get(k, 0.0)) for k in ("k1", "k2", "p1", "p2", "k3")],
            "baseline_m": None if b is None else float(b)}
