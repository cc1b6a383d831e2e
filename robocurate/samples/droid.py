"""Synthetic DROID raw episodes in the real layout, with labelled faults.

``OUT/<LAB>/{success|failure}/<YYYY-MM-DD>/<Day_Mon_DD_HH:MM:SS_YYYY>/`` with
``metadata_<uuid>.json`` (the key set and order of a real DROID metadata file),
``trajectory.h5`` at 15 Hz (action/, observation/{camera_extrinsics, camera_type,
controller_info, robot_state, timestamp} and the file attributes DROID writes) and, with
``with_video``, ``recordings/MP4/<serial>-stereo.mp4`` side-by-side stereo videos of a
synthetic scene whose true depth is known (``robocurate.samples.droid_stereo``), rendered
with the rectified intrinsics and baseline of that camera's factory calibration.
Folder names use both spellings (``22:22:44`` and ``22_22_44``) and single-digit days
(double underscore).

``OUT/calibration/SN<serial>.conf`` are factory-style ZED calibration files (raw intrinsics
of every resolution, stereo extrinsics), and ``OUT/calibration/intrinsics_table.json`` the
rectified HD intrinsics per serial for the ``table`` source. ``OUT/sample_manifest.json``
lists every episode with its fault (or None) and the finding a correct pipeline reports:

* ``missing_trajectory``: no trajectory.h5;
* ``truncated_trajectory``: trajectory.h5 cut in half;
* ``no_camera_serials``: metadata with null camera serials (h5 camera_type still there);
* ``camera_without_intrinsics``: an external camera with no .conf and no table entry;
* ``nan_states``: NaN rows in observation/robot_state/cartesian_position;
* ``zero_length``: a trajectory with 0 steps.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np

from robocurate.droid import calibration
from robocurate.droid.kinematics import matrix_to_pose6, pose6_to_matrix
from robocurate.io.atomic import atomic_write_bytes, atomic_write_json
from robocurate.samples.motion import min_jerk_path, seeded_rng

MANIFEST_NAME = "sample_manifest.json"
CONTROL_HZ = 15.0
LABS = ("AUTOLab", "CLVR", "IRIS", "RAIL")
TASKS = ("Put the marker in the cup", "Open the top drawer", "Move the bowl to the left",
         "Move object into or out of container (ex: drawer, clothes hamper, plate, trashcan, washer)")
FAULTS = {
    "missing_trajectory": ("missing_trajectory", "failed"),
    "truncated_trajectory": ("unreadable_trajectory", "failed"),
    "no_camera_serials": ("no_camera_serials", "ok"),
    "camera_without_intrinsics": ("no_intrinsics", "ok"),
    "nan_states": ("nan_states", "failed"),
    "zero_length": ("zero_length", "failed"),
}
_RES_SCALE = {"2K": 2208 / 1280, "FHD": 1.5, "HD": 1.0, "VGA": 672 / 1280}


def _look_at(eye, target) -> np.ndarray:
    """4x4 camera->base pose, OpenCV axes (z forward, x right, y down)."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    if np.linalg.norm(x) < 1e-6:
        x = np.array([0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z], 1)
    T[:3, 3] = eye
    return T


def conf_text(rng: np.random.Generator, wrist: bool) -> str:
    """A factory calibration file in Stereolabs' format (raw, unrectified)."""
    base_f = 700.0 if wrist else 528.0
    baseline = 63.0 if wrist else 120.0
    lines = []
    for side in ("LEFT", "RIGHT"):
        f = base_f + rng.normal(0, 4)
        c = (640 + rng.normal(0, 6), 360 + rng.normal(0, 4))
        d = [rng.normal(-0.04, 0.01), rng.normal(0.012, 0.004), rng.normal(0, 2e-4),
             rng.normal(0, 2e-4), rng.normal(-0.005, 0.002)]
        for res, s in _RES_SCALE.items():
            lines += [f"[{side}_CAM_{res}]", f"cx={c[0] * s:.4f}", f"cy={c[1] * s:.4f}",
                      f"fx={f * s:.4f}", f"fy={(f + 0.3) * s:.4f}",
                      f"k1={d[0]:.6f}", f"k2={d[1]:.6f}", f"p1={d[2]:.8f}", f"p2={d[3]:.8f}",
                      f"k3={d[4]:.6f}", ""]
    lines += ["[STEREO]", f"Baseline={baseline + rng.normal(0, 0.3):.4f}",
              f"TY={rng.normal(0, 0.05):.6f}", f"TZ={rng.normal(0, 0.2):.6f}"]
    for key in ("CV", "RX", "RZ"):
        v = rng.normal(0, 0.002)
        lines += [f"{key}_{res}={v:.6f}" for res in _RES_SCALE]
    lines += ["", "[MISC]", f"Sensor_ID={0 if wrist else 1}", ""]
    return "\n".join(lines)


def _folder_name(when: dt.datetime, underscore_time: bool) -> str:
    name = when.ctime().replace(" ", "_")  # time.asctime(): day padded with a space
    return name.replace(":", "_") if underscore_time else name


def _trajectory(rng: np.random.Generator, T: int, pause: bool) -> tuple[np.ndarray, np.ndarray]:
    """Smooth flange poses [T,6] and gripper positions [T] of a pick-like motion."""
    n_way = 5
    way = np.column_stack([rng.uniform(0.38, 0.62, n_way), rng.uniform(-0.22, 0.22, n_way),
                           rng.uniform(0.18, 0.42, n_way)])
    times = np.linspace(0, max(T - 1, 1), n_way)
    t = np.arange(T, dtype=float)
    if pause and T > 20:  # hold still for a stretch (pauses collapse in the 1 mm flow)
        a, b = 0.4 * T, 0.55 * T
        t = t - np.clip(t - a, 0.0, b - a)
    pos = min_jerk_path(way, times, t)
    rot_way = np.column_stack([np.pi + rng.normal(0, 0.15, n_way), rng.normal(0, 0.15, n_way),
                               rng.uniform(-0.8, 0.8, n_way)])
    rot = min_jerk_path(rot_way, times, t)
    rot[:, 0] = (rot[:, 0] + np.pi) % (2 * np.pi) - np.pi
    grip = np.clip(0.5 - 0.5 * np.cos(2 * np.pi * t / max(T, 1) * rng.uniform(0.8, 1.6)), 0, 1)
    return np.column_stack([pos, rot]), grip


class _Lab:
    def __init__(self, name: str, idx: int, seed: int):
        rng = seeded_rng(seed, 1000 + idx)
        self.name = name
        self.wrist = str(13000000 + int(rng.integers(0, 999999)))
        self.ext = sorted(str(20000000 + int(rng.integers(0, 9999999))) for _ in range(2))
        self.confs = {self.wrist: conf_text(rng, True),
                      **{s: conf_text(rng, False) for s in self.ext}}
        self.user = f"Operator {idx}"
        self.user_id = f"{int(rng.integers(0, 16 ** 8)):08x}"
        self.robot = f"{int(rng.integers(100000, 999999))}-{int(rng.integers(1000000, 9999999))}"
        # External cameras left and right of the table, looking at the workspace.
        self.ext_pose = {
            self.ext[0]: _look_at([0.15 + rng.normal(0, 0.03), 0.55, 0.55], [0.5, 0.0, 0.2]),
            self.ext[1]: _look_at([0.15 + rng.normal(0, 0.03), -0.55, 0.5], [0.5, 0.0, 0.2])}
        # Wrist camera on the gripper, behind and beside the fingers, looking along the tool.
        self.wrist_offset = _look_at([0.09, 0.0, 0.02], [0.0, 0.0, 0.16])


def generate_droid_episodes(out: str | Path, *, episodes: int = 4, seed: int = 0,
                            steps: int | tuple[int, int] = (60, 120), with_video: bool = False,
                            video_frames: int | None = None, faults: bool = True) -> dict:
    """Write ``episodes`` clean episodes (plus one of each fault when ``faults``); returns
    the manifest, also written to ``OUT/sample_manifest.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lo, hi = (steps, steps) if isinstance(steps, int) else steps
    n_labs = min(len(LABS), max(1, episodes))
    labs = [_Lab(LABS[i], i, seed) for i in range(n_labs)]
    calib_dir = out / "calibration"
    missing_serial = "29999999"  # the camera whose calibration is nowhere to be found
    table = {}
    for lab in labs:
        for serial, text in lab.confs.items():
            atomic_write_bytes(calib_dir / f"SN{serial}.conf", text.encode())
            rec = calibration.rectified_from_conf(calibration.parse_zed_conf(text))
            table[serial] = {**calibration.intrinsics_json(rec), "baseline_m": rec["baseline_m"]}
    atomic_write_json(calib_dir / "intrinsics_table.json", table)

    plan = [None] * episodes + (list(FAULTS) if faults else [])
    base = dt.datetime(2023, 5, 1, 9, 0, 0) + dt.timedelta(days=int(seed) % 200)
    records = []
    for i, fault in enumerate(plan):
        rng = seeded_rng(seed, i)
        lab = labs[i % n_labs]
        T = 0 if fault == "zero_length" else int(rng.integers(lo, hi + 1))
        when = base + dt.timedelta(days=int(i % 12), hours=int(rng.integers(0, 9)),
                                   minutes=int(rng.integers(0, 60)), seconds=int(rng.integers(0, 60)))
        outcome = "failure" if i % 3 == 2 else "success"
        folder = _folder_name(when, underscore_time=(i % 4 == 3))
        rel = f"{outcome}/{when:%Y-%m-%d}/{folder}"
        ep_dir = out / lab.name / rel
        ep_dir.mkdir(parents=True, exist_ok=True)
        ts = when.strftime("%Y-%m-%d-%Hh-%Mm-%Ss")
        uuid = f"{lab.name}+{lab.user_id}+{ts}"
        ext = list(lab.ext)
        ext_pose = dict(lab.ext_pose)
        if fault == "camera_without_intrinsics":
            ext_pose[missing_serial] = ext_pose.pop(ext[1])
            ext = sorted([ext[0], missing_serial])
        cart, grip = _trajectory(rng, T, pause=(i % 2 == 1))
        dropped = T > 30 and i % 5 == 1  # one episode loses a step: a timestamp gap
        ep = {"index": i, "lab": lab.name, "rel": f"{lab.name}/{rel}", "uuid": uuid,
              "fault": fault, "steps": T, "wrist": lab.wrist, "external": ext,
              "dropped_step": bool(dropped),
              "expected_rule": FAULTS[fault][0] if fault else None,
              "expected_status": FAULTS[fault][1] if fault else "ok"}
        h5_path = ep_dir / "trajectory.h5"
        if fault != "missing_trajectory":
            _write_h5(h5_path, rng, cart, grip, lab, ext, ext_pose, outcome, when, dropped,
                      nan_rows=fault == "nan_states")
        if fault == "truncated_trajectory":
            data = h5_path.read_bytes()
            h5_path.write_bytes(data[: len(data) // 2])
        meta = _metadata(lab, uuid, ts, when, rel, outcome, T, ext, ext_pose, cart, i,
                         no_serials=fault == "no_camera_serials", rng=rng)
        atomic_write_bytes(ep_dir / f"metadata_{uuid}.json", json.dumps(meta).encode())
        if with_video and fault is None:
            ep["videos"] = _videos(ep_dir, lab, ext, video_frames or T, seed * 1000 + i)
        records.append(ep)
    manifest = {"generator": "robocurate.samples.droid", "seed": seed, "control_hz": CONTROL_HZ,
                "calib_dir": str(calib_dir), "intrinsics_table": str(calib_dir / "intrinsics_table.json"),
                "camera_without_intrinsics": missing_serial, "episodes": records}
    atomic_write_json(out / MANIFEST_NAME, manifest)
    return manifest


def _videos(ep_dir: Path, lab: _Lab, ext: list[str], frames: int, seed: int) -> list[dict]:
    from robocurate.samples.droid_stereo import write_stereo_mp4

    out = []
    for serial in [lab.wrist, *ext]:
        if serial not in lab.confs:
            continue
        rec = calibration.rectified_from_conf(calibration.parse_zed_conf(lab.confs[serial]))
        path = ep_dir / "recordings" / "MP4" / f"{serial}-stereo.mp4"
        write_stereo_mp4(path, fx=rec["fx"], fy=rec["fy"], cx=rec["cx"], cy=rec["cy"],
                         baseline_m=rec["baseline_m"], width=rec["width"], height=rec["height"],
                         frames=max(1, frames), seed=seed)
        out.append({"serial": serial, "path": str(path), "frames": max(1, frames),
                    "baseline_m": rec["baseline_m"]})
    return out


def _stereo_right(T_left: np.ndarray, baseline: float) -> np.ndarray:
    T = T_left.copy()
    T[..., :3, 3] += baseline * T[..., :3, 0]
    return T


def _write_h5(path, rng, cart, grip, lab, ext, ext_pose, outcome, when, dropped, nan_rows):
    import h5py

    T = len(cart)
    step_ms = 1000.0 / CONTROL_HZ
    k = np.arange(T, dtype=float)
    if dropped:
        k[T // 2:] += 1  # one control step missing from the recording
    t0 = when.timestamp() * 1000.0
    step_start = t0 + k * step_ms + rng.normal(0, 1.5, T)
    obs_cart = cart.copy()
    if nan_rows and T:
        obs_cart[T // 3: T // 3 + 3] = np.nan
    joints = np.cumsum(rng.normal(0, 0.01, (T, 7)), axis=0)
    flange = pose6_to_matrix(cart) if T else np.zeros((0, 4, 4))
    with h5py.File(path, "w") as f:
        f.attrs.update({"building": "Lab building", "scene_id": int(rng.integers(1, 2 ** 31)),
                        "user": lab.user, "current_task": TASKS[int(rng.integers(len(TASKS)))],
                        "fixed_tasks": "[]", "new_tasks": "[]",
                        "failure": outcome == "failure", "success": outcome == "success",
                        "robot_serial_number": f"panda-{lab.robot}",
                        "time": when.strftime("%Y-%m-%d-%Hh-%Mm-%Ss"), "version_number": "1.3"})
        a = f.create_group("action")
        a["cartesian_position"] = cart
        a["cartesian_velocity"] = np.gradient(cart, axis=0) * CONTROL_HZ if T > 1 else cart * 0
        a["gripper_position"] = grip
        a["gripper_velocity"] = np.gradient(grip) * CONTROL_HZ if T > 1 else grip * 0
        a["joint_position"] = joints
        a["joint_velocity"] = np.gradient(joints, axis=0) if T > 1 else joints * 0
        a["target_cartesian_position"] = cart
        a["target_gripper_position"] = grip
        o = f.create_group("observation")
        ce = o.create_group("camera_extrinsics")
        wrist_left = flange @ lab.wrist_offset if T else np.zeros((0, 4, 4))
        wb = 0.063
        ce[f"{lab.wrist}_left"] = matrix_to_pose6(wrist_left) if T else np.zeros((0, 6))
        ce[f"{lab.wrist}_right"] = matrix_to_pose6(_stereo_right(wrist_left, wb)) if T else np.zeros((0, 6))
        ce[f"{lab.wrist}_left_gripper_offset"] = np.tile(matrix_to_pose6(lab.wrist_offset), (T, 1))
        ce[f"{lab.wrist}_right_gripper_offset"] = np.tile(
            matrix_to_pose6(_stereo_right(lab.wrist_offset, wb)), (T, 1))
        for s in ext:
            ce[f"{s}_left"] = np.tile(matrix_to_pose6(ext_pose[s]), (T, 1))
            ce[f"{s}_right"] = np.tile(matrix_to_pose6(_stereo_right(ext_pose[s], 0.12)), (T, 1))
        ct = o.create_group("camera_type")
        ct[lab.wrist] = np.zeros(T, dtype=np.int64)
        for s in ext:
            ct[s] = np.ones(T, dtype=np.int64)
        ci = o.create_group("controller_info")
        for name in ("controller_on", "movement_enabled"):
            ci[name] = np.ones(T, dtype=bool)
        ci["success"] = np.zeros(T, dtype=bool)
        ci["failure"] = np.zeros(T, dtype=bool)
        rs = o.create_group("robot_state")
        rs["cartesian_position"] = obs_cart
        rs["gripper_position"] = grip
        rs["joint_positions"] = joints
        rs["joint_velocities"] = np.gradient(joints, axis=0) if T > 1 else joints * 0
        for name in ("joint_torques_computed", "prev_joint_torques_computed",
                     "prev_joint_torques_computed_safened", "motor_torques_measured"):
            rs[name] = rng.normal(0, 0.5, (T, 7))
        rs["prev_controller_latency_ms"] = rng.uniform(0.5, 3.0, T)
        rs["prev_command_successful"] = np.ones(T, dtype=bool)
        ts = o.create_group("timestamp")
        ts["skip_action"] = np.zeros(T, dtype=bool)
        cam = ts.create_group("cameras")
        for s in [lab.wrist, *ext]:
            received = step_start + rng.uniform(8, 14, T)
            cam[f"{s}_read_start"] = (step_start + 1).astype(np.int64)
            cam[f"{s}_read_end"] = (received + 1).astype(np.int64)
            cam[f"{s}_frame_received"] = received.astype(np.int64)
            cam[f"{s}_estimated_capture"] = (received - 2.5 * 1000 / 60).astype(np.int64)
        c = ts.create_group("control")
        c["step_start"] = step_start.astype(np.int64)
        c["policy_start"] = (step_start + 20).astype(np.int64)
        c["sleep_start"] = (step_start + 25).astype(np.int64)
        c["control_start"] = (step_start + 60).astype(np.int64)
        c["step_end"] = (step_start + 64).astype(np.int64)
        r = ts.create_group("robot_state")
        secs = (step_start + 15) / 1000.0
        r["robot_timestamp_seconds"] = np.floor(secs).astype(np.int64)
        r["robot_timestamp_nanos"] = ((secs - np.floor(secs)) * 1e9).astype(np.int64)
        r["read_start"] = (step_start + 14).astype(np.int64)
        r["read_end"] = (step_start + 16).astype(np.int64)


def _metadata(lab, uuid, ts, when, rel, outcome, T, ext, ext_pose, cart, i, *, no_serials, rng):
    """The key set and order of a real DROID 1.x metadata_*.json."""
    wrist_pose = (pose6_to_matrix(cart[0]) @ lab.wrist_offset) if T else lab.wrist_offset
    ext1, ext2 = ext
    left = ext1 if ext_pose[ext1][1, 3] >= ext_pose[ext2][1, 3] else ext2
    right = ext2 if left == ext1 else ext1

    def svo(s):
        return f"{rel}/recordings/SVO/{s}.svo"

    def mp4(s):
        return f"{rel}/recordings/MP4/{s}.mp4"

    return {
        "uuid": uuid, "lab": lab.name, "user": lab.user, "user_id": lab.user_id,
        "date": f"{when:%Y-%m-%d}", "timestamp": ts, "hdf5_path": f"{rel}/trajectory.h5",
        "building": "Lab building", "scene_id": int(rng.integers(1, 2 ** 31)),
        "success": outcome == "success", "robot_serial": lab.robot, "r2d2_version": "1.1",
        "current_task": TASKS[i % len(TASKS)], "trajectory_length": T,
        "wrist_cam_serial": None if no_serials else lab.wrist,
        "ext1_cam_serial": None if no_serials else ext1,
        "ext2_cam_serial": None if no_serials else ext2,
        "wrist_cam_extrinsics": matrix_to_pose6(wrist_pose).tolist(),
        "ext1_cam_extrinsics": matrix_to_pose6(ext_pose[ext1]).tolist(),
        "ext2_cam_extrinsics": matrix_to_pose6(ext_pose[ext2]).tolist(),
        "wrist_svo_path": svo(lab.wrist), "wrist_mp4_path": mp4(lab.wrist),
        "ext1_svo_path": svo(ext1), "ext1_mp4_path": mp4(ext1),
        "ext2_svo_path": svo(ext2), "ext2_mp4_path": mp4(ext2),
        "left_mp4_path": mp4(left), "right_mp4_path": mp4(right),
    }
