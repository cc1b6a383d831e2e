"""Full mode, depth: one lossless ``depth.mkv`` per camera of a DROID episode.

For each camera serial, depth frames aligned to the rectified left image are computed
one frame at a time and streamed into ``out_dir/recordings/{serial}/depth.mkv`` (FFV1
gray16le, millimetres, 0 = invalid; see ``ffv1.py``), then ``depth_meta.json`` beside it
says how to decode it and how much of it is valid. Two sources:

``stereo``
    stereo matching of ``episode_dir/recordings/MP4/{serial}-stereo.mp4`` (left|right
    halves, already rectified) with the rectified left ``fx`` and the ``baseline_m`` from
    ``calibration[serial]``: OpenCV SGBM on the CPU, the torch block matcher on CUDA.
``zed``
    the ZED SDK's NEURAL depth from ``recordings/SVO/{serial}.svo`` as the original
    pipeline did (needs ``pyzed`` and a GPU, i.e. the ZED container). ``pyzed`` is imported
    only when this source is chosen; without it there is a finding naming ``stereo``.

Problems with one camera (missing or unreadable video, no calibration) become findings
for that camera and the other cameras go on. Both files are written under temporary
names and renamed into place; the meta file is renamed last, so a ``depth_meta.json``
always describes a complete ``depth.mkv``. Pure library: no Prefect.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from robocurate.droid.ffv1 import DEFAULT_SCALE, DepthWriter, metres_to_mm
from robocurate.droid.stereo import (CalibrationError, StereoConfig, StereoDepth, resolve_device,
                                     stereo_geometry)
from robocurate.findings import Findings
from robocurate.io.atomic import atomic_write_json
from robocurate.log import get_logger

__all__ = ["DEPTH_META_NAME", "DEPTH_NAME", "SOURCES", "episode_depth", "stereo_video_path"]

DEPTH_NAME = "depth.mkv"
DEPTH_META_NAME = "depth_meta.json"
SOURCES = ("stereo", "zed")
FALLBACK_FPS = 15.0  # DROID's control and camera rate, when a video does not say
_READ_ERRORS = (av.error.FFmpegError, OSError, ValueError, RuntimeError, EOFError)


class _CameraError(Exception):
    def __init__(self, path, rule: str, message: str):
        self.path, self.rule, self.message = str(path), rule, message
        super().__init__(message)


def stereo_video_path(episode_dir: Path, serial: str) -> Path:
    return Path(episode_dir) / "recordings" / "MP4" / f"{serial}-stereo.mp4"


def episode_depth(episode_dir: Path, out_dir: Path, *, serials: list[str],
                  calibration: dict[str, dict], source: str = "stereo", min_depth: float = 0.1,
                  device: str = "auto", config: StereoConfig | None = None) -> dict:
    """Depth videos for ``serials`` of one episode. Returns a JSON-able manifest
    ``{"cameras": {serial: {...}}, "findings": [finding dicts]}``."""
    episode_dir, out_dir = Path(episode_dir), Path(out_dir)
    findings = Findings()
    cameras: dict[str, dict] = {}
    log = get_logger(step="droid.depth", episode=str(episode_dir))

    if source not in SOURCES:
        findings.add(episode_dir, "depth.bad_source",
                     f"depth source {source!r} is not one of {', '.join(SOURCES)}")
        return {"cameras": cameras, "findings": findings.to_list()}
    if source == "zed":
        try:
            importlib.import_module("pyzed.sl")  # only the zed source needs the SDK
        except ImportError as exc:
            findings.add(episode_dir, "depth.zed_unavailable",
                         f"the ZED SDK (pyzed) cannot be imported here ({exc}); it exists only in the "
                         "ZED container with a GPU. Use depth source 'stereo' instead: stereo matching "
                         "of recordings/MP4/{serial}-stereo.mp4 with calibration fx and baseline.")
            return {"cameras": cameras, "findings": findings.to_list()}

    for serial in serials:
        serial = str(serial)
        try:
            if source == "stereo":
                cameras[serial] = _camera_stereo(episode_dir, out_dir, serial, calibration.get(serial),
                                                 min_depth, device, config, findings)
            else:
                cameras[serial] = _camera_zed(episode_dir, out_dir, serial, min_depth, device)
            log.info("depth written", serial=serial, frames=cameras[serial]["frames"],
                     valid=cameras[serial]["valid_pixel_fraction"])
        except _CameraError as exc:
            findings.add(exc.path, exc.rule, exc.message, item=serial)
            log.warning("depth failed", serial=serial, rule=exc.rule, message=exc.message)
        except (OSError, av.error.FFmpegError) as exc:
            # Reading problems are _CameraErrors already; what is left is the output side
            # (disk full, permissions). Writers removed their temp files on the way out.
            target = out_dir / "recordings" / serial
            findings.add(target, "depth.write_failed", f"cannot write depth output: {exc}", item=serial)
            log.warning("depth write failed", serial=serial, error=str(exc))
    return {"cameras": cameras, "findings": findings.to_list()}


# --------------------------------------------------------------------------- stereo


def _open_video(path: Path):
    if not path.is_file():
        raise _CameraError(path, "depth.video_missing", "stereo video not found")
    try:
        container = av.open(str(path), mode="r")
    except _READ_ERRORS as exc:
        raise _CameraError(path, "depth.video_unreadable", f"cannot open video: {exc}") from None
    if not container.streams.video:
        container.close()
        raise _CameraError(path, "depth.video_unreadable", "no video stream")
    return container, container.streams.video[0]


def _pick_matcher(device: str, findings: Findings, video: Path, serial: str) -> tuple[str, str]:
    dev = resolve_device(device)
    if dev.startswith("cuda"):
        try:
            import torch
            if torch.cuda.is_available():
                return "torch", dev
        except ImportError:
            pass
        findings.add(video, "depth.no_cuda", f"device {device!r} asked for but CUDA is not available; "
                     "used OpenCV SGBM on the CPU", item=serial, severity="warning")
        return "sgbm", "cpu"
    if dev == "cpu":
        return "sgbm", "cpu"
    raise _CameraError(video, "depth.bad_device", f"device {device!r} is not 'auto', 'cpu' or 'cuda[:N]'")


def _camera_stereo(episode_dir: Path, out_dir: Path, serial: str, calib, min_depth: float, device: str,
                   config: StereoConfig | None, findings: Findings) -> dict:
    video = stereo_video_path(episode_dir, serial)
    if calib is None:
        raise _CameraError(video, "depth.no_calibration", f"no calibration for camera {serial}")
    try:
        stereo_geometry(calib)
    except CalibrationError as exc:
        raise _CameraError(video, "depth.bad_calibration", str(exc)) from None

    container, stream = _open_video(video)
    t0 = time.perf_counter()
    try:
        ctx = stream.codec_context
        sbs_w, h = ctx.width, ctx.height
        if sbs_w <= 0 or h <= 0 or sbs_w % 2:
            raise _CameraError(video, "depth.video_unreadable",
                               f"frame size {sbs_w}x{h} is not a side-by-side stereo pair")
        w = sbs_w // 2
        calib = _fit_calibration(calib, w, h, video, serial, findings)
        cfg = config or StereoConfig()
        cfg = dataclasses.replace(cfg, min_depth=float(min_depth))
        method, dev = _pick_matcher(device, findings, video, serial)
        matcher = StereoDepth(calib, method=method, device=dev, config=cfg)
        fps = _fps(stream)
        stream.thread_type = "AUTO"

        target = out_dir / "recordings" / serial / "depth.mkv"
        writer = DepthWriter(target, w, h, fps)
        valid = total = 0
        index = 0
        try:
            for frame in container.decode(stream):
                # The luma plane is the grey image the matcher wants; no colour conversion.
                grey = frame.to_ndarray(format="gray")
                if grey.shape != (h, sbs_w):
                    raise _CameraError(video, "depth.video_unreadable",
                                       f"frame {index} is {grey.shape[1]}x{grey.shape[0]}, not {sbs_w}x{h}")
                mm = matcher.frame_depth_mm(grey)
                writer.write(mm)
                valid += int(np.count_nonzero(mm))
                total += mm.size
                index += 1
            if index == 0:
                raise _CameraError(video, "depth.video_empty", "the video has no decodable frames")
        except _READ_ERRORS as exc:
            writer.abort()
            raise _CameraError(video, "depth.video_unreadable", f"decode failed at frame {index}: {exc}") from None
        except BaseException:
            writer.abort()
            raise
        meta = {
            **_format_fields(w, h, fps, index, "stereo", valid / total),
            "method": "opencv_sgbm" if method == "sgbm" else "torch_block_matching",
            "device": dev,
            "min_depth_m": float(min_depth),
            "min_measurable_depth_m": round(matcher.min_measurable_depth_m, 4),
            "num_disparities": matcher.num_disparities * cfg.downscale,
            "fx": matcher.fx,
            "baseline_m": matcher.baseline_m,
            "input": str(video.relative_to(episode_dir)),
        }
        return _finish(writer, target, meta, serial, t0)
    finally:
        container.close()


def _fit_calibration(calib: dict, w: int, h: int, video: Path, serial: str, findings: Findings) -> dict:
    """The calibration must describe the video's half-frame size; when it was made for
    another resolution of the same sensor, the intrinsics scale with the image (baseline
    does not), and a warning says so."""
    cw, ch = calib.get("width"), calib.get("height")
    if not cw or not ch or (int(cw), int(ch)) == (w, h):
        return calib
    sx, sy = w / float(cw), h / float(ch)
    if abs(sx - sy) > 0.01:
        raise _CameraError(video, "depth.calibration_size_mismatch",
                           f"calibration is for {cw}x{ch} but the views are {w}x{h} (different aspect)")
    findings.add(video, "depth.calibration_rescaled",
                 f"calibration is for {cw}x{ch}, views are {w}x{h}: intrinsics scaled by {sx:.4f}",
                 item=serial, severity="warning")
    out = dict(calib)
    for k, s in (("fx", sx), ("cx", sx), ("fy", sy), ("cy", sy)):
        if k in out:
            out[k] = float(out[k]) * s
    out["width"], out["height"] = w, h
    return out


def _fps(stream) -> float:
    rate = stream.average_rate or stream.base_rate or stream.guessed_rate
    try:
        fps = float(Fraction(rate)) if rate else 0.0
    except (TypeError, ValueError, ZeroDivisionError):
        fps = 0.0
    return fps if 0 < fps < 1000 else FALLBACK_FPS


# --------------------------------------------------------------------------- ZED SDK


def _camera_zed(episode_dir: Path, out_dir: Path, serial: str, min_depth: float, device: str) -> dict:
    """The original pipeline's route (extract_rgb_depth.py): NEURAL depth in metres from
    the SVO, converted to millimetres as it did (NaN/inf -> 0, clip, truncate)."""
    import pyzed.sl as sl

    svo_dir = episode_dir / "recordings" / "SVO"
    svo = next((p for p in (svo_dir / f"{serial}.svo", svo_dir / f"{serial}.svo2") if p.is_file()), None)
    if svo is None:
        raise _CameraError(svo_dir / f"{serial}.svo", "depth.svo_missing", "SVO recording not found")
    init = sl.InitParameters()
    init.set_from_svo_file(str(svo))
    init.svo_real_time_mode = False
    init.depth_mode = sl.DEPTH_MODE.NEURAL
    init.coordinate_units = sl.UNIT.METER
    init.depth_minimum_distance = float(min_depth)
    if device.startswith("cuda:"):
        init.sdk_gpu_id = int(device.split(":", 1)[1])
    cam = sl.Camera()
    err = cam.open(init)
    if err != sl.ERROR_CODE.SUCCESS:
        raise _CameraError(svo, "depth.svo_unreadable", f"ZED SDK cannot open the SVO: {err}")
    t0 = time.perf_counter()
    try:
        info = cam.get_camera_information().camera_configuration
        w, h = int(info.resolution.width), int(info.resolution.height)
        fps = float(info.fps) or FALLBACK_FPS
        target = out_dir / "recordings" / serial / "depth.mkv"
        writer = DepthWriter(target, w, h, fps)
        runtime, mat = sl.RuntimeParameters(), sl.Mat()
        valid = total = index = 0
        try:
            while True:
                status = cam.grab(runtime)
                if status == sl.ERROR_CODE.END_OF_SVOFILE_REACHED:
                    break
                if status != sl.ERROR_CODE.SUCCESS:
                    raise _CameraError(svo, "depth.svo_unreadable", f"grab failed at frame {index}: {status}")
                cam.retrieve_measure(mat, sl.MEASURE.DEPTH)
                mm = metres_to_mm(mat.get_data())
                mm[mm < int(round(min_depth * 1000))] = 0
                writer.write(mm)
                valid += int(np.count_nonzero(mm))
                total += mm.size
                index += 1
            if index == 0:
                raise _CameraError(svo, "depth.video_empty", "the SVO has no frames")
        except BaseException:
            writer.abort()
            raise
        meta = {**_format_fields(w, h, fps, index, "zed", valid / total), "method": "zed_neural",
                "device": device, "min_depth_m": float(min_depth),
                "input": str(svo.relative_to(episode_dir))}
        return _finish(writer, target, meta, serial, t0)
    finally:
        cam.close()


# --------------------------------------------------------------------------- shared


def _format_fields(w: int, h: int, fps: float, frames: int, source: str, valid_fraction: float) -> dict:
    return {
        "format": "ffv1_gray16le",
        "codec": "ffv1",
        "container": "matroska",
        "pix_fmt": "gray16le",
        "encoding": "gray16le",   # the original's files say "bgr_split_uint16" here
        "unit": "millimeters",
        "scale": DEFAULT_SCALE,
        "depth_scale": DEFAULT_SCALE,  # the original's key for the same number
        "invalid_value": 0,
        "decode": "depth_m = value / scale; value 0 = invalid",
        "width": w,
        "height": h,
        "fps": fps,
        "frame_count": frames,
        "source": source,
        "valid_pixel_fraction": round(float(valid_fraction), 6),
    }


def _finish(writer: DepthWriter, target: Path, meta: dict, serial: str, t0: float) -> dict:
    writer.close()
    meta["serial"] = serial
    meta["seconds"] = round(time.perf_counter() - t0, 3)
    meta_path = target.parent / DEPTH_META_NAME
    atomic_write_json(meta_path, meta)
    return {"depth": str(target), "meta": str(meta_path), "frames": meta["frame_count"],
            "fps": meta["fps"], "width": meta["width"], "height": meta["height"],
            "valid_pixel_fraction": meta["valid_pixel_fraction"], "method": meta["method"],
            "seconds": meta["seconds"]}
