"""One DROID episode in metadata mode: intrinsics, contact tracks, 1 mm flow, extrinsics,
2D projections and quality, written into a staging folder and moved into place at once.

Outputs (in ``OUT_ROOT/<lab>/<success|failure>/<date>/<timestamp folder>/``):
``tracks.npz`` (every key of the original, ``cameras_with_2d_tracks`` as a unicode array
so ``np.load(allow_pickle=False)`` works, ``fps`` measured from the step timestamps),
``extrinsics.npz``, ``quality.json`` and ``recordings/<serial>/intrinsics.json``.

Nothing here raises for bad data: a missing or truncated ``trajectory.h5``, a zero-length
episode or NaN robot states fail the episode with a finding and write nothing; a camera
without intrinsics or extrinsics is a finding for that camera and the others go on.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from robocurate.droid import calibration, extrinsics as extr, kinematics, projection
from robocurate.droid.flow_resample import normalize_flow
from robocurate.droid.layout import Episode
from robocurate.findings import Findings
from robocurate.io.atomic import atomic_write_json, fsync_dir

STAGING = ".staging"
QUALITY_VERSION = 1
_TS_SOURCES = (("observation/timestamp/control/step_start", "control/step_start (ms)"),
               ("observation/timestamp/robot_state/robot_timestamp_seconds", "robot clock"))


@dataclass
class TrackOptions:
    intrinsics_source: str = "conf"
    calib_dir: str | None = None
    intrinsics_table: str | None = None
    extrinsics_source: str = "h5"  # "h5" | "superset"
    superset: str | None = None
    points_per_finger: int = 480
    step_mm: float = 1.0
    min_depth: float = 0.1
    seed: int = 0
    resolution: str = calibration.DROID_RESOLUTION

    def to_dict(self) -> dict:
        return asdict(self)


class TrajectoryError(Exception):
    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule = rule


@dataclass
class Trajectory:
    cartesian: np.ndarray
    gripper: np.ndarray
    timestamps_ms: np.ndarray | None
    timestamp_source: str | None
    camera_extrinsics: dict[str, np.ndarray] = field(default_factory=dict)
    camera_type: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)


def read_trajectory(path: Path) -> Trajectory:
    """The few arrays the tracks need (each read whole: they are [T,6] or smaller)."""
    import h5py

    if not path.is_file():
        raise TrajectoryError("missing_trajectory", "trajectory.h5 is missing")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise TrajectoryError("unreadable_trajectory",
                              f"trajectory.h5 cannot be opened (truncated or corrupt): {exc}") \
            from None
    try:
        with f:
            need = ("observation/robot_state/cartesian_position",
                    "observation/robot_state/gripper_position")
            missing = [k for k in need if k not in f]
            if missing:
                raise TrajectoryError("missing_dataset", f"trajectory.h5 lacks {', '.join(missing)}")
            cart = np.asarray(f[need[0]][()], dtype=np.float64)
            grip = np.asarray(f[need[1]][()], dtype=np.float64).reshape(-1)
            if cart.ndim != 2 or cart.shape[1] != 6:
                raise TrajectoryError("bad_shape", f"{need[0]} has shape {cart.shape}, not (T, 6)")
            if len(grip) != len(cart):
                raise TrajectoryError("bad_shape", f"{need[1]} has {len(grip)} rows but "
                                      f"cartesian_position has {len(cart)}")
            ts, ts_src = None, None
            for key, label in _TS_SOURCES:
                if key in f and len(f[key]) == len(cart):
                    ts = np.asarray(f[key][()], dtype=np.float64)
                    if key.endswith("robot_timestamp_seconds"):
                        nanos = "observation/timestamp/robot_state/robot_timestamp_nanos"
                        ts = ts * 1000.0 + (np.asarray(f[nanos][()], np.float64) / 1e6
                                            if nanos in f else 0.0)
                    ts_src = label
                    break
            cam_ext = {}
            if "observation/camera_extrinsics" in f:
                g = f["observation/camera_extrinsics"]
                cam_ext = {k: np.asarray(g[k][()], dtype=np.float64) for k in g
                           if isinstance(g[k], h5py.Dataset)}
            cam_type = {}
            if "observation/camera_type" in f:
                g = f["observation/camera_type"]
                cam_type = {k: np.asarray(g[k][()]) for k in g if isinstance(g[k], h5py.Dataset)}
            attrs = {k: _jsonable(v) for k, v in f.attrs.items()}
    except TrajectoryError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise TrajectoryError("unreadable_trajectory",
                              f"trajectory.h5 cannot be read (truncated or corrupt): {exc}") \
            from None
    return Trajectory(cart, grip, ts, ts_src, cam_ext, cam_type, attrs)


def _jsonable(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def timing(ts_ms: np.ndarray | None, n: int) -> dict:
    """Frame rate from the step timestamps. A gap is an interval > 1.5x the median one,
    and the steps it skipped are round(gap / median) - 1; fps = 1000 / the mean of the
    other intervals (the mean, not the median, because DROID stores whole milliseconds:
    the median of 66/67 ms steps would say 14.93 Hz)."""
    out = {"source": None, "fps": None, "mean_rate_hz": None, "median_interval_ms": None,
           "max_interval_ms": None, "gaps": 0, "dropped_steps": 0, "non_increasing": 0,
           "duration_s": None}
    if ts_ms is None or n < 2:
        return out
    d = np.diff(ts_ms)
    good = d[np.isfinite(d) & (d > 0)]
    out["non_increasing"] = int(np.sum(~(np.isfinite(d) & (d > 0))))
    if len(good) == 0:
        return out
    med = float(np.median(good))
    gaps = good[good > 1.5 * med]
    duration = float(ts_ms[-1] - ts_ms[0]) / 1000.0 if np.isfinite(ts_ms[[0, -1]]).all() else None
    regular = good[good <= 1.5 * med]
    out.update(fps=1000.0 / float(regular.mean()), median_interval_ms=med, max_interval_ms=float(good.max()),
               gaps=int(len(gaps)), dropped_steps=int(np.sum(np.round(gaps / med) - 1)),
               duration_s=duration,
               mean_rate_hz=(n - 1) / duration if duration and duration > 0 else None)
    return out


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # np.savez into a temp file next to the target, then rename (no half-written npz).
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _path_length(points: np.ndarray) -> float:
    if len(points) < 2:
        return 0.0
    return float(np.linalg.norm(np.diff(np.asarray(points, np.float64), axis=0), axis=-1).sum())


def _staging_name(rel: str) -> str:
    return rel.replace("/", "+").replace(":", "-")


def staging_dir(out_root: str | Path, ep: Episode) -> Path:
    return Path(out_root) / STAGING / f"{_staging_name(ep.rel)}.{uuid.uuid4().hex[:8]}"


def drop_stale_staging(out_root: str | Path, rel: str) -> int:
    """Remove what failed attempts at episode ``rel`` left for inspection, once an attempt
    succeeded. Returns how many entries went."""
    root = Path(out_root) / STAGING
    if not root.is_dir():
        return 0
    gone = 0
    for p in root.glob(f"{_staging_name(rel)}.*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        gone += 1
    return gone


def input_files(ep: Episode, opts: TrackOptions, *, with_videos: bool) -> list[str]:
    """Every file an episode's outputs depend on, for caching by content: the trajectory,
    the metadata, the calibration sources the options name and, with ``with_videos``
    (full mode), the stereo recordings depth reads. Missing files are left out: the
    episode's own checks report them."""
    files = [ep.path / "trajectory.h5"]
    if ep.metadata_path:
        files.append(Path(ep.metadata_path))
    cams = extr.cameras_from_metadata(ep.metadata or {})
    serials = cams.all if cams else []
    if opts.intrinsics_source == "conf" and opts.calib_dir:
        confs = [calibration.find_conf(opts.calib_dir, s) for s in serials]
        files += ([c for c in confs if c] if serials
                  else sorted(Path(opts.calib_dir).glob("*.conf")))
    for extra in (opts.intrinsics_table, opts.superset):
        if extra:
            files.append(Path(extra))
    if with_videos:
        files += sorted((ep.path / "recordings" / "MP4").glob("*-stereo.mp4"))
    return [str(p) for p in files if p.is_file()]


def build_episode(ep_dict: dict, stage: str, opts: TrackOptions) -> dict:
    """Compute every metadata-mode output of one episode into the folder ``stage``.

    Returns the manifest: status ("ok" | "failed"), findings, and what the depth step and
    the flow need (cameras with their stereo calibration, frame count, fps)."""
    t0 = time.perf_counter()
    ep = Episode.from_dict(ep_dict)
    stage_path = Path(stage)
    findings = Findings()
    where = ep.path
    manifest = {"rel": ep.rel, "episode_id": ep.episode_id, "status": "failed",
                "staging": str(stage_path), "findings": findings}

    def done(status: str) -> dict:
        manifest["status"] = status
        manifest["seconds"] = round(time.perf_counter() - t0, 4)
        manifest["findings"] = findings.to_list()
        if status != "ok" and not stage_path.exists():
            manifest.pop("staging", None)  # nothing was staged: nothing to inspect
        return manifest

    for rule, msg in ep.problems:
        findings.add(ep.metadata_path or where, rule, msg, severity="warning")
    meta = ep.metadata or {}

    try:
        traj = read_trajectory(ep.path / "trajectory.h5")
    except TrajectoryError as exc:
        findings.add(ep.path / "trajectory.h5", exc.rule, str(exc))
        return done("failed")
    n = len(traj.cartesian)
    if n == 0:
        findings.add(ep.path / "trajectory.h5", "zero_length", "the trajectory has no steps")
        return done("failed")
    bad = ~(np.isfinite(traj.cartesian).all(axis=1) & np.isfinite(traj.gripper))
    if bad.any():
        first = int(np.argmax(bad))
        findings.add(ep.path / "trajectory.h5", "nan_states",
                     f"{int(bad.sum())} of {n} steps have non-finite cartesian or gripper "
                     f"state (first at step {first}); contact tracks would be undefined")
        return done("failed")
    expected = meta.get("trajectory_length")
    if isinstance(expected, int) and expected != n:
        findings.add(ep.metadata_path or where, "length_mismatch",
                     f"metadata says {expected} steps, trajectory.h5 has {n}", severity="warning")

    cams = extr.cameras_from_metadata(meta)
    if cams is None:
        findings.add(ep.metadata_path or where, "no_camera_serials",
                     "metadata names no camera serials; using observation/camera_type",
                     severity="warning")
        cams = extr.cameras_from_h5(traj.camera_type)
        if cams is None:
            findings.add(ep.path / "trajectory.h5", "no_cameras",
                         "no camera serials in metadata or trajectory.h5: no 2D tracks",
                         severity="warning")
            cams = extr.CameraSet(None, [], "none")

    tm = timing(traj.timestamps_ms, n)
    tm["source"] = traj.timestamp_source
    if tm["fps"] is None:
        findings.add(ep.path / "trajectory.h5", "no_timestamps",
                     "no usable step timestamps; fps is NaN", severity="warning")
    elif tm["dropped_steps"]:
        findings.add(ep.path / "trajectory.h5", "dropped_steps",
                     f"{tm['gaps']} timestamp gaps, about {tm['dropped_steps']} steps missing "
                     f"(max interval {tm['max_interval_ms']:.1f} ms)", severity="info")

    # Contact tracks and the normalized flow.
    tr = kinematics.contact_tracks(traj.cartesian, traj.gripper,
                                   num_points_per_finger=opts.points_per_finger, seed=opts.seed)
    flow = normalize_flow(tr["tracks_3d"], tr["contact_centroids"], tr["contact_frames"],
                          tr["left_contact_frames"], tr["right_contact_frames"], opts.step_mm)

    # Extrinsics.
    superset_entry, superset_key = None, None
    if opts.extrinsics_source == "superset":
        superset_key = ep.superset_key
        entry = _superset(opts.superset).superset.get(superset_key) if superset_key else None
        if entry is None:
            findings.add(where, "not_in_superset",
                         "no entry for this episode in the superset calibration file")
        superset_entry = entry if entry is not None else {}
    flange = kinematics.pose6_to_matrix(traj.cartesian)
    ex = extr.compute_extrinsics(cams, n, flange, tr["gripper_poses"], traj.camera_extrinsics,
                                 meta, superset_entry)
    for serial, rule, msg in ex.problems:
        findings.add(where, rule, msg, item=serial, severity="warning")

    # Intrinsics and projections, camera by camera.
    arrays = {
        "tracks_3d": tr["tracks_3d"], "contact_points_local": tr["contact_points_local"],
        "gripper_poses": tr["gripper_poses"], "gripper_positions": traj.gripper,
        "cartesian_positions": traj.cartesian, "contact_centroids": tr["contact_centroids"],
        "contact_frames": tr["contact_frames"], "left_contact_frames": tr["left_contact_frames"],
        "right_contact_frames": tr["right_contact_frames"],
        **{k: v for k, v in flow.items()
           if k not in ("num_normalized_steps", "normalized_step_size_mm")},
        "normalized_step_size_mm": np.float64(flow["normalized_step_size_mm"]),
        "num_normalized_steps": np.int64(flow["num_normalized_steps"]),
        "num_frames": np.int64(n), "num_points_per_finger": np.int64(opts.points_per_finger),
        "fps": np.float64(tm["fps"] if tm["fps"] is not None else np.nan),
    }
    cameras_q, with_2d, calib_for_depth, intr_files = {}, [], {}, {}
    for serial in cams.all:
        role = "wrist" if serial == cams.wrist else "external"
        q = {"role": role, "intrinsics_source": None, "has_extrinsics": ex.pose(serial) is not None}
        cameras_q[serial] = q
        try:
            rec = calibration.camera_intrinsics(
                serial, source=opts.intrinsics_source, episode_dir=ep.path,
                episode_id=ep.episode_id, calib_dir=opts.calib_dir,
                table_path=opts.intrinsics_table, resolution=opts.resolution)
        except calibration.CalibrationError as exc:
            findings.add(where, "no_intrinsics", str(exc), item=serial, severity="warning")
            continue
        q["intrinsics_source"] = rec.get("source")
        intr_files[serial] = calibration.intrinsics_json(rec)
        baseline = rec.get("baseline_m") or _h5_baseline(traj.camera_extrinsics, serial)
        calib_for_depth[serial] = calibration.stereo_calibration(rec, baseline)
        pose = ex.pose(serial)
        if pose is None:
            continue
        K = projection.intrinsic_matrix(rec)
        uv = projection.project_tracks(tr["tracks_3d"], pose, K, opts.min_depth)
        w, h = int(rec["width"]), int(rec["height"])
        arrays[f"tracks_2d_{serial}"] = uv
        arrays[f"intrinsics_{serial}"] = K
        arrays[f"image_size_{serial}"] = np.array([w, h], dtype=np.int64)
        with_2d.append(serial)
        q.update(fraction_in_front=round(projection.fraction_valid(uv), 6),
                 fraction_inside_image=round(projection.fraction_inside(uv, w, h), 6),
                 frames_with_any_point_inside=_frames_inside(uv, w, h))
    arrays["cameras_with_2d_tracks"] = np.array(with_2d, dtype=np.str_)

    quality = _quality(ep, meta, n, tm, traj, tr, flow, ex, cams, cameras_q, with_2d,
                       superset_key, superset_entry, opts)
    try:
        stage_path.mkdir(parents=True, exist_ok=False)
        _write_npz(stage_path / "tracks.npz", arrays)
        _write_npz(stage_path / "extrinsics.npz", ex.npz_arrays())
        for serial, rec in intr_files.items():
            atomic_write_json(stage_path / "recordings" / serial / "intrinsics.json", rec)
        atomic_write_json(stage_path / "quality.json", quality)
    except OSError as exc:
        findings.add(stage_path, "write_failed", f"cannot write outputs: {exc}")
        return done("failed")
    manifest.update(num_frames=n, fps=tm["fps"], cameras=cams.all, cameras_with_2d_tracks=with_2d,
                    calibration=calib_for_depth, num_normalized_steps=int(flow["num_normalized_steps"]))
    return done("ok")


def _frames_inside(uv: np.ndarray, w: int, h: int) -> int:
    with np.errstate(invalid="ignore"):
        inside = (uv[..., 0] >= 0) & (uv[..., 0] < w) & (uv[..., 1] >= 0) & (uv[..., 1] < h)
    return int(inside.any(axis=1).sum())


def _h5_baseline(cam_ext: dict, serial: str) -> float | None:
    """|t_left - t_right| at the first step: DROID's own (noisier) stereo baseline."""
    left, right = cam_ext.get(f"{serial}_left"), cam_ext.get(f"{serial}_right")
    if left is None or right is None or not len(left) or not len(right):
        return None
    d = float(np.linalg.norm(np.asarray(left[0][:3]) - np.asarray(right[0][:3])))
    return d if np.isfinite(d) and d > 0 else None


_SUPERSETS: dict[str, object] = {}


def _superset(path: str | None):
    from robocurate.droid.layout import SupersetIndex

    if not path:
        raise ValueError("--extrinsics-source superset needs --superset FILE")
    if path not in _SUPERSETS:
        _SUPERSETS[path] = SupersetIndex.load(path)
    return _SUPERSETS[path]


def _r(x, nd=6):
    return None if x is None or not np.isfinite(x) else round(float(x), nd)


def _quality(ep, meta, n, tm, traj, tr, flow, ex, cams, cameras_q, with_2d, superset_key,
             superset_entry, opts) -> dict:
    grip = traj.gripper
    centroid_len = _path_length(tr["contact_centroids"])
    ee_len = _path_length(traj.cartesian[:, :3])
    if superset_key is not None:
        calib = {superset_key: superset_entry}
    else:
        calib = {f"{s}_left": np.asarray(traj.camera_extrinsics[f"{s}_left"][0]).tolist()
                 for s in cams.all if len(traj.camera_extrinsics.get(f"{s}_left", [])) > 0}
    speeds = None
    if tm["fps"] and n > 1:
        step = np.linalg.norm(np.diff(np.asarray(tr["contact_centroids"], np.float64), axis=0), axis=1)
        speeds = step * tm["fps"]
    return {
        # The original's fields.
        "episode_id": ep.episode_id,
        "source_path": ep.rel,
        "outcome": ep.outcome,
        "num_frames": n,
        "num_track_points": 2 * opts.points_per_finger,
        "external_cameras": list(cams.externals),
        "wrist_camera": cams.wrist,
        "cameras_with_2d_tracks": list(with_2d),
        "cam2base_calibration": calib,
        # What a user filtering episodes wants to know.
        "quality_version": QUALITY_VERSION,
        "lab": ep.lab, "date": ep.date, "timestamp": ep.timestamp,
        "task": meta.get("current_task"), "success": meta.get("success"),
        "building": meta.get("building"), "scene_id": meta.get("scene_id"),
        "robot_serial": meta.get("robot_serial"),
        "droid_version": meta.get("droid_version", meta.get("r2d2_version")),
        "metadata_trajectory_length": meta.get("trajectory_length"),
        "camera_serials_from": cams.source,
        "calibration_score": ep.score,
        "timing": {k: (_r(v, 4) if isinstance(v, float) else v) for k, v in tm.items()},
        "fps": _r(tm["fps"], 4),
        "gripper": {"min": _r(grip.min()), "max": _r(grip.max()),
                    "range": _r(grip.max() - grip.min()), "mean": _r(grip.mean()),
                    "fraction_closed_over_0_5": _r(float(np.mean(grip > 0.5))),
                    "out_of_unit_range": int(np.sum((grip < -1e-6) | (grip > 1 + 1e-6)))},
        "path_length_m": {"contact_centroid": _r(centroid_len), "end_effector": _r(ee_len)},
        "centroid_speed_m_s": None if speeds is None else {
            "median": _r(float(np.median(speeds))), "max": _r(float(speeds.max()))},
        "workspace_m": {"min": np.round(traj.cartesian[:, :3].min(0), 4).tolist(),
                        "max": np.round(traj.cartesian[:, :3].max(0), 4).tolist()},
        "normalized_flow": {"step_size_mm": float(opts.step_mm),
                            "num_normalized_steps": int(flow["num_normalized_steps"])},
        "cameras": cameras_q,
        "cameras_missing_intrinsics": [s for s, q in cameras_q.items()
                                       if q["intrinsics_source"] is None],
        "extrinsics": {"source": ex.source, "wrist_method": ex.wrist_method},
        "intrinsics_source": opts.intrinsics_source,
        "contact_model": {"surface": "inner pad rectangle (see robocurate.droid.kinematics)",
                          "points_per_finger": opts.points_per_finger, "seed": opts.seed,
                          "min_depth_m": opts.min_depth},
    }


def finalize(stage: str | Path, final: str | Path) -> Path:
    """Move a complete staging folder into place; an older output is replaced whole."""
    stage, final = Path(stage), Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    os.replace(stage, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(final.parent)
    return final


def update_quality(stage: str | Path, key: str, value) -> None:
    """Add one section (e.g. the depth results) to a staged quality.json."""
    path = Path(stage) / "quality.json"
    q = json.loads(path.read_text())
    q[key] = value
    atomic_write_json(path, q)


def process_episode(ep: Episode | dict, out_root: str | Path, opts: TrackOptions) -> dict:
    """Metadata mode for one episode end to end: stage, then move into place. The staging
    folder is removed after success and kept (named in the manifest) after a failure."""
    ep_dict = ep.to_dict() if isinstance(ep, Episode) else ep
    episode = Episode.from_dict(ep_dict)
    stage = staging_dir(out_root, episode)
    m = build_episode(ep_dict, str(stage), opts)
    if m["status"] == "ok":
        m["output"] = str(finalize(stage, Path(out_root) / episode.rel))
        m.pop("staging", None)
    return m
