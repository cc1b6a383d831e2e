"""Synthetic MolmoSpaces data: realistic files plus deliberately broken ones.

Writes split directories in the exact on-disk format of MolmoSpaces data generation
(reference part 1.1-1.2): ``house_{id}/trajectories_batch_{b}_of_{n}.h5`` next to
``episode_{i:08d}_{camera}[_depth]_batch_{b}_of_{n}.mp4``, with ``obs/sensor_data``
left empty as the real writer leaves it. Trajectories are a kinematically consistent
pick-and-place by a DROID Franka (forward kinematics ties joint angles, TCP pose,
commanded end-effector poses, object motion and the image points the cameras see),
so statistics and visibility computed from them behave like real data.

With ``with_invalid`` every rule of ``validate_trajectories.py`` (reference 1.5) is
broken by at least one planted trajectory, each of which breaks exactly one rule, and
``sample_manifest.json`` records what a correct repair + validate pass must conclude
for every trajectory. The expectations assume: repair has linked every MP4 that
exists into ``obs/sensor_data``; ``min_steps=3``; ``frames_to_check=3``; video checks
on (unless generated with ``video=False``); visibility checked for the pairs listed
under ``check_visibility``; and a camera of ``obs/sensor_param`` whose RGB video is
missing makes the trajectory invalid (``video_missing``), which is stricter than the
original script (see the ``reference_script_differs`` note on that case).

Pure library: no Prefect.
"""

from __future__ import annotations

import json
import os
import tempfile
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from robocurate.io.video import write_depth_mp4, write_mp4
from robocurate.io.atomic import atomic_write_bytes
from robocurate.samples.motion import min_jerk_path, seeded_rng, smoothstep

__all__ = [
    "CASES",
    "CHECK_CAMERA",
    "CHECK_OBJECTS",
    "DEFAULT_CAMERAS",
    "MANIFEST_NAME",
    "RULE_IDS",
    "CameraSpec",
    "generate_molmo_dataset",
]

MANIFEST_NAME = "sample_manifest.json"
MANIFEST_SCHEMA = "robocurate.samples.molmo/1"

STR_MAX_LEN = 2000  # Sensor.str_max_len default; qpos/qvel and action rows
POLICY_DT_MS = 66.67
GRIPPER_MAX = 0.824033  # MLSPACES_GRIPPER_MAX_POS (Robotiq driver joint)
MAX_POINTS = 10  # ObjectImagePointsSensor.max_points
COMPRESSION = "lzf"  # save_utils.COMPR
CHECK_CAMERA = "droid_shoulder_light_randomization"
CHECK_OBJECTS = ("pickup_obj", "place_receptacle")

RULE_IDS = (
    "nonconsecutive_indices",
    "no_actions",
    "action_length_mismatch",
    "too_few_steps",
    "action_json",
    "no_agent",
    "agent_missing_key",
    "agent_length_mismatch",
    "agent_json",
    "visibility_object_missing",
    "visibility_camera_missing",
    "visibility_not_visible",
    "video_missing",
    "video_frame_count",
    "video_undecodable",
    "unreadable_file",
)

# Planted trajectory case -> the rule a correct validator must report (None = valid).
CASES: dict[str, str | None] = {
    "clean": None,
    "no_actions_group": "no_actions",
    "empty_actions_group": "no_actions",
    "action_length_mismatch": "action_length_mismatch",
    "too_few_steps": "too_few_steps",
    "action_json_truncated": "action_json",
    "no_agent": "no_agent",
    "agent_missing_qvel": "agent_missing_key",
    "agent_length_mismatch": "agent_length_mismatch",
    "agent_json_corrupt": "agent_json",
    "visibility_object_missing": "visibility_object_missing",
    "visibility_camera_missing": "visibility_camera_missing",
    "visibility_not_visible": "visibility_not_visible",
    "video_missing": "video_missing",
    "video_missing_all": "video_missing",
    "video_frame_count": "video_frame_count",
    "depth_video_frame_count": "video_frame_count",
    "video_truncated": "video_undecodable",
    "video_corrupt_payload": "video_undecodable",
    # Edge cases that must stay valid.
    "min_steps_boundary": None,
    "no_depth_video": None,
    "wrist_not_visible": None,
    # Only in the old-object_image_points-format file.
    "old_format": None,
    "old_format_not_visible": "visibility_not_visible",
}

# What each case does, for people reading the manifest.
_CASE_NOTES = {
    "clean": "valid trajectory",
    "no_actions_group": "no actions group at all",
    "empty_actions_group": "actions group with no datasets",
    "action_length_mismatch": "actions/joint_pos has one row fewer than the other actions",
    "too_few_steps": "T=2 (< min_steps 3, dummy and done rows included)",
    "action_json_truncated": "one actions/ee_pose row cut mid-JSON (str_max_len overflow)",
    "no_agent": "no obs/agent group",
    "agent_missing_qvel": "obs/agent has qpos but no qvel",
    "agent_length_mismatch": "obs/agent/qvel has one row fewer than actions",
    "agent_json_corrupt": "one obs/agent/qpos row has NUL bytes inside the JSON",
    "visibility_object_missing": "object_image_points has no place_receptacle",
    "visibility_camera_missing": "object_image_points/pickup_obj lacks the checked camera",
    "visibility_not_visible": "pickup_obj has num_points[0,0]==0 in the checked camera",
    "video_missing": "the checked camera's RGB mp4 was never written (other videos exist)",
    "video_missing_all": "no mp4 at all for this episode (sensor_data stays empty)",
    "video_frame_count": "the checked camera's RGB mp4 has T-3 frames",
    "depth_video_frame_count": "the depth mp4 has T+2 frames (depth videos are checked too)",
    "video_truncated": "the checked camera's RGB mp4 cut to 40% (no moov atom: cannot open)",
    "video_corrupt_payload": "the checked camera's RGB mp4 opens and counts right, "
                             "but its mdat payload is zeroed (cannot decode)",
    "min_steps_boundary": "T=3, exactly min_steps: valid",
    "no_depth_video": "depth mp4 absent; a missing depth video is not an error",
    "wrist_not_visible": "objects invisible to the wrist camera at t=0; only the checked "
                         "camera matters",
    "old_format": "object_image_points in the old (T,K) uint8 JSON format, visible",
    "old_format_not_visible": "old format, place_receptacle has [] in the checked camera at t=0",
    "nonconsecutive": "file's trajectory keys skip an index: the whole mask is False",
    "unreadable": "truncated copy of an HDF5 file: cannot be opened",
}

_X264_OPTS = {"threads": "1"}

_VIDEO_CASES = {"video_missing", "video_missing_all", "video_frame_count",
                "depth_video_frame_count", "video_truncated", "video_corrupt_payload",
                "no_depth_video"}
_DEPTH_CASES = {"depth_video_frame_count", "no_depth_video"}


@dataclass(frozen=True)
class CameraSpec:
    """One camera of the generated camera system."""

    name: str
    record_depth: bool = False
    fovy_deg: float = 50.0

    @property
    def on_wrist(self) -> bool:
        return "wrist" in self.name


DEFAULT_CAMERAS = (
    CameraSpec("wrist_camera_zed_mini", record_depth=True, fovy_deg=58.0),
    CameraSpec("droid_shoulder_light_randomization", record_depth=False, fovy_deg=45.0),
)

_PICKUP_NAMES = ("mug", "apple", "soda_can", "sponge", "spatula", "cup", "banana", "lemon")
_RECEPTACLE_NAMES = ("bowl", "plate", "basket", "tray", "pan", "box")
_COLOURS = ("red", "blue", "green", "yellow", "white", "black", "orange")


# =========================================================================== public API


def generate_molmo_dataset(
    out_dir: str | os.PathLike,
    *,
    houses: int = 2,
    files_per_house: int = 2,
    trajs_per_file: int = 6,
    seed: int = 0,
    splits: Sequence[str] | None = None,
    steps: tuple[int, int] = (40, 80),
    width: int = 320,
    height: int = 184,
    cameras: Iterable[CameraSpec | str | tuple[str, bool]] | None = None,
    with_invalid: bool = True,
    with_unreadable: bool = True,
    video: bool = True,
) -> dict:
    """Write a MolmoSpaces-format split dir (or dataset root with ``splits``).

    Layout: ``houses`` houses per split, each with ``files_per_house`` regular batch
    files of ``trajs_per_file`` clean trajectories. Planted invalid trajectories
    (``with_invalid``) are *added* to the regular files, spread round-robin and
    shuffled in among the clean ones. File-level quirks (a non-consecutive-index file,
    an old-format file, an unreadable file) live in one extra house of the first
    split, numbered ``batch_b_of_n`` among themselves so regular houses keep
    ``n == files_per_house``.

    ``steps`` is the inclusive range of trajectory lengths T. ``video=False`` writes
    no MP4 (for big statistics benchmarks); expectations then assume ``--no-video``.
    Returns the manifest, also written to ``out_dir/sample_manifest.json``.
    """
    out_dir = Path(out_dir)
    cams = _camera_specs(cameras)
    lo, hi = int(steps[0]), int(steps[1])
    if not 3 <= lo <= hi:
        raise ValueError(f"steps must satisfy 3 <= lo <= hi, got {steps}")
    if width % 2 or height % 2 or width < 16 or height < 16:
        raise ValueError(f"width and height must be even and >= 16, got {width}x{height}")
    if houses < 1 or files_per_house < 1 or trajs_per_file < 0:
        raise ValueError("houses and files_per_house must be >= 1, trajs_per_file >= 0")
    check_cam = _check_camera(cams)
    depth_cam = next((c for c in cams if c.record_depth), None)
    split_names = [str(s) for s in splits] if splits else [None]
    if len(set(split_names)) != len(split_names):
        raise ValueError(f"duplicate split names: {splits}")

    gen = _Generator(seed=seed, cams=cams, check_cam=check_cam, width=width, height=height,
                     video=video)

    n_quirk_files = 2 * bool(with_invalid) + bool(with_unreadable)
    house_ids = _house_ids(seed, len(split_names) * houses + bool(n_quirk_files))

    # Regular files, in house-major order across splits.
    regular: list[dict] = []
    for si, split in enumerate(split_names):
        for hi_ in range(houses):
            hid = house_ids[si * houses + hi_]
            for b in range(1, files_per_house + 1):
                regular.append({"split": split, "split_i": si, "house_id": hid,
                                "b": b, "n": files_per_house, "cases": []})
    if with_invalid:
        planted = [c for c in CASES if c not in ("clean", "old_format", "old_format_not_visible")]
        if not video:
            planted = [c for c in planted if c not in _VIDEO_CASES]
        if depth_cam is None:
            planted = [c for c in planted if c not in _DEPTH_CASES]
        if not any(c.on_wrist and c.name != check_cam for c in cams):
            planted.remove("wrist_not_visible")
        for j, case in enumerate(planted):
            regular[j % len(regular)]["cases"].append(case)

    try:
        files = _write_all(gen, out_dir, regular, split_names, house_ids, n_quirk_files, seed,
                           trajs_per_file, with_invalid, with_unreadable, (lo, hi))
    finally:
        gen.close()

    manifest = _manifest(
        files=files, split_names=split_names, cams=cams, check_cam=check_cam, video=video,
        params=dict(houses=houses, files_per_house=files_per_house,
                    trajs_per_file=trajs_per_file, seed=seed,
                    splits=list(splits) if splits else None, steps=[lo, hi], width=width,
                    height=height, with_invalid=with_invalid,
                    with_unreadable=with_unreadable, video=video),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(out_dir / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    return manifest


def _write_all(gen, out_dir, regular, split_names, house_ids, n_quirk_files, seed,
               trajs_per_file, with_invalid, with_unreadable, steps) -> list[dict]:
    lo, hi = steps
    files: list[dict] = []
    for spec in regular:
        rng = seeded_rng(seed, 1, spec["split_i"], spec["house_id"], spec["b"])
        cases = ["clean"] * trajs_per_file + spec["cases"]
        order = rng.permutation(len(cases))
        trajs = [(i, cases[k]) for i, k in enumerate(order)]
        files.append(gen.write_file(out_dir, spec, trajs, rng, steps=(lo, hi)))

    if n_quirk_files:
        qspec = {"split": split_names[0], "split_i": 0, "house_id": house_ids[-1],
                 "n": n_quirk_files}
        b = 1
        if with_invalid:
            rng = seeded_rng(seed, 2, 1)
            trajs = [(0, "clean"), (1, "old_format_not_visible"), (2, "clean")]
            files.append(gen.write_file(out_dir, {**qspec, "b": b}, trajs, rng, steps=(lo, hi),
                                        old_format=True))
            b += 1
            rng = seeded_rng(seed, 2, 2)
            trajs = [(0, "clean"), (1, "clean"), (3, "clean")]
            files.append(gen.write_file(out_dir, {**qspec, "b": b}, trajs, rng, steps=(lo, hi),
                                        nonconsecutive=True))
            b += 1
        if with_unreadable:
            files.append(gen.write_unreadable(out_dir, {**qspec, "b": b}, seeded_rng(seed, 2, 3),
                                              steps=(lo, hi)))

    return files


# =========================================================================== generator


@dataclass
class _Traj:
    """One trajectory's datasets, ready to write: path (relative to traj_i) -> array."""

    T: int
    data: dict[str, np.ndarray] = field(default_factory=dict)
    empty_groups: set[str] = field(default_factory=set)
    obs_scene: str = ""
    # For drawing videos: per camera, (T,2) pixel centres, (T,) radius px, (T,) visible.
    draw: dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]] = field(
        default_factory=dict)
    cam_height: np.ndarray | None = None  # (T,) wrist camera height above the table, m


class _Generator:
    def __init__(self, *, seed, cams, check_cam, width, height, video):
        self.seed = seed
        self.cams = cams
        self.check_cam = check_cam
        self.W = width
        self.H = height
        self.video = video
        self.fps = round(1000.0 / POLICY_DT_MS)
        self.workers = max(1, min(4, os.cpu_count() or 1)) if video else 0
        self.pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None
        self._pending: list[Future] = []
        yy, xx = np.mgrid[0:height, 0:width]
        self._yy = yy.astype(np.float32)
        self._xx = xx.astype(np.float32)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    # ------------------------------------------------------------------ files

    def write_file(self, out_dir: Path, spec: dict, trajs, rng, *, steps, old_format=False,
                   nonconsecutive=False) -> dict:
        house = f"house_{spec['house_id']}"
        split_dir = out_dir / spec["split"] if spec["split"] else out_dir
        house_dir = split_dir / house
        house_dir.mkdir(parents=True, exist_ok=True)
        suffix = f"batch_{spec['b']}_of_{spec['n']}"
        h5_path = house_dir / f"trajectories_{suffix}.h5"
        entries = []
        # Dot-prefixed temp name: never matched by the pipeline's traj*.h5 glob.
        fd, tmp = tempfile.mkstemp(prefix=f".{h5_path.name}.", suffix=".tmp", dir=house_dir)
        os.close(fd)
        try:
            with h5py.File(tmp, "w") as f:
                for idx, case in trajs:
                    case_name = "old_format" if old_format and case == "clean" else case
                    if case == "too_few_steps":
                        T = 2
                    elif case == "min_steps_boundary":
                        T = 3
                    else:
                        T = int(rng.integers(steps[0], steps[1] + 1))
                    trng = seeded_rng(self.seed, 3, spec["split_i"], spec["house_id"], spec["b"], idx)
                    traj = self.synth(trng, T, case, old_format=old_format)
                    _write_traj(f, f"traj_{idx}", traj)
                    traj.data = {}  # written; the video job only needs the drawing info
                    videos = self._submit(self.write_videos, house_dir, idx, suffix, traj, case)
                    reason = "nonconsecutive_indices" if nonconsecutive else CASES[case]
                    entries.append({
                        "key": f"traj_{idx}",
                        "index": idx,
                        "T": T,
                        "case": case_name,
                        "note": _CASE_NOTES["nonconsecutive" if nonconsecutive else case_name],
                        "expected": {"valid": reason is None, "reason": reason},
                        "videos": videos,  # a future until the file is done
                        "expected_sensor_data": None,
                    })
                    if case == "video_missing":
                        # Our validator requires a linked video per camera; the original
                        # checks only linked videos (and its repair script asserts).
                        entries[-1]["reference_script_differs"] = (
                            "validate_trajectories.py would pass it: it only checks videos "
                            "linked in sensor_data; repair_video_paths.py would assert")
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; data files are meant to be shared
            os.replace(tmp, h5_path)
            for e in entries:
                e["videos"] = e["videos"].result()
                e["expected_sensor_data"] = sorted(
                    k for k, v in e["videos"].items() if v["status"] != "missing")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        kind = "old_object_image_points" if old_format else (
            "nonconsecutive" if nonconsecutive else "regular")
        return {
            "path": h5_path.relative_to(out_dir).as_posix(),
            "split": spec["split"],
            "house": house,
            "batch_suffix": suffix,
            "kind": kind,
            "readable": True,
            "expected_file": None,
            "expected_mask": [e["expected"]["valid"] for e in
                              sorted(entries, key=lambda e: e["index"])],
            "trajectories": sorted(entries, key=lambda e: e["index"]),
        }

    def write_unreadable(self, out_dir: Path, spec: dict, rng, *, steps) -> dict:
        house = f"house_{spec['house_id']}"
        split_dir = out_dir / spec["split"] if spec["split"] else out_dir
        house_dir = split_dir / house
        house_dir.mkdir(parents=True, exist_ok=True)
        h5_path = house_dir / f"trajectories_batch_{spec['b']}_of_{spec['n']}.h5"
        # What a writer killed mid-flush leaves: a valid superblock whose recorded EOF
        # lies past the end of the file, so HDF5 refuses to open it (OSError).
        fd, buf_name = tempfile.mkstemp(prefix=f".{h5_path.name}.", suffix=".full",
                                        dir=house_dir)
        os.close(fd)
        buf = Path(buf_name)
        try:
            with h5py.File(buf, "w") as f:
                for idx in range(2):
                    T = int(rng.integers(steps[0], steps[1] + 1))
                    _write_traj(f, f"traj_{idx}", self.synth(rng, T, "clean"))
            raw = buf.read_bytes()
        finally:
            buf.unlink(missing_ok=True)
        atomic_write_bytes(h5_path, raw[: len(raw) // 2])
        return {
            "path": h5_path.relative_to(out_dir).as_posix(),
            "split": spec["split"],
            "house": house,
            "batch_suffix": f"batch_{spec['b']}_of_{spec['n']}",
            "kind": "unreadable",
            "readable": False,
            "note": _CASE_NOTES["unreadable"],
            "expected_file": {"valid": False, "reason": "unreadable_file"},
            "expected_mask": None,
            "trajectories": [],
        }

    # ------------------------------------------------------------------ trajectory

    def synth(self, rng: np.random.Generator, T: int, case: str, *, old_format=False) -> _Traj:
        W, H = self.W, self.H
        dt = POLICY_DT_MS / 1000.0
        t = np.arange(T)
        tr = _Traj(T=T)

        # --- joint-space plan: home -> pregrasp -> grasp -> lift -> place -> retreat
        q0 = _HOME + rng.normal(0.0, 0.04, 7)

        def reach(yaw, r, lift, wrist):
            # Shoulder forward + elbow opening lowers the hand to the table (~7-10 cm
            # above the base plane at lift=0); q6 = q2 - q4 keeps the gripper vertical.
            q = _HOME.copy()
            q[0] = yaw
            q[1] += 0.6 + 0.4 * r - lift
            q[3] += -0.55 + 0.6 * r + rng.normal(0, 0.03) - 0.5 * lift
            q[2] = rng.normal(0, 0.04)
            q[4] = rng.normal(0, 0.04)
            q[5] = q[1] - q[3] + rng.normal(0, 0.04)
            q[6] = _HOME[6] + wrist
            return q

        yaw_pick = rng.uniform(-0.6, 0.6)
        yaw_place = yaw_pick + rng.choice([-1.0, 1.0]) * rng.uniform(0.35, 0.8)
        wrist = rng.normal(0, 0.35)
        q_grasp = reach(yaw_pick, rng.uniform(0, 1), 0.0, wrist)
        q_pre = reach(yaw_pick, rng.uniform(0, 1), 0.25, wrist)
        q_place = reach(yaw_place, rng.uniform(0, 1), 0.08, wrist + rng.normal(0, 0.2))
        q_lift = 0.5 * (q_grasp + q_place) + np.array([0, -0.3, 0, -0.15, 0, -0.15, 0])
        q_end = q_place + np.array([0, -0.3, 0, -0.15, 0, -0.15, 0])
        way = np.clip(np.stack([q0, q_pre, q_grasp, q_lift, q_place, q_end]), _Q_LO, _Q_HI)
        frac = np.array([0.0, 0.22, 0.36, 0.55, 0.76, 1.0])
        times = frac * (T - 1)
        arm = min_jerk_path(way, times, t)

        t_grasp, t_place = times[2], times[4]
        closed = rng.uniform(0.45, 0.78)
        g = closed * (smoothstep((t - t_grasp) / 3.0) - smoothstep((t - t_place - 1) / 3.0))
        gripper = np.clip(np.stack([g, g * (1.0 + rng.normal(0, 0.004))], axis=1), 0.0,
                          GRIPPER_MAX)
        arm_vel = np.gradient(arm, dt, axis=0) if T > 1 else np.zeros_like(arm)
        grip_vel = np.gradient(gripper, dt, axis=0) if T > 1 else np.zeros_like(gripper)

        # --- robot placement in the house and the TCP in world coordinates
        yaw = rng.uniform(-np.pi, np.pi)
        base_pos = np.array([rng.uniform(1.0, 7.0), rng.uniform(1.0, 7.0), 0.76])
        base_quat = np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])
        base_mat = _pose_mat(base_pos, _quat_to_mat(base_quat))
        tcp_local = _fk(arm)  # (T,4,4) relative to the robot base
        tcp_world = base_mat @ tcp_local

        # --- objects: the pickup object sits where the gripper closes, rides along
        # while held, and stays where it was released; the receptacle sits below.
        i_grasp = int(min(T - 1, np.ceil(t_grasp + 3)))
        i_release = int(min(T - 1, np.ceil(t_place + 1)))
        grasp_tcp = tcp_world[min(T - 1, round(t_grasp)), :3, 3]
        place_tcp = tcp_world[min(T - 1, round(t_place)), :3, 3]
        obj_pos0 = grasp_tcp - np.array([0.0, 0.0, 0.01])
        obj = np.repeat(obj_pos0[None], T, axis=0)
        held = (t >= i_grasp) & (t < i_release)
        if held.any():
            offset = obj_pos0 - tcp_world[i_grasp, :3, 3]
            obj[held] = tcp_world[held, :3, 3] + offset
            obj[t >= i_release] = obj[held][-1] - np.array([0.0, 0.0, 0.03])
        rec_pos = place_tcp - np.array([0.0, 0.0, 0.07])
        obj_yaw = rng.uniform(-np.pi, np.pi)
        obj_quat = np.array([np.cos(obj_yaw / 2), 0, 0, np.sin(obj_yaw / 2)])
        rec_yaw = rng.uniform(-np.pi, np.pi)
        rec_quat = np.array([np.cos(rec_yaw / 2), 0, 0, np.sin(rec_yaw / 2)])

        # --- cameras
        mid = 0.5 * (obj_pos0 + rec_pos)
        cam_poses: dict[str, np.ndarray] = {}
        for cam in self.cams:
            if cam.on_wrist:
                mount = _pose_mat(np.array([0.06, 0.0, -0.11]), np.diag([1.0, -1.0, -1.0]))
                cam_poses[cam.name] = tcp_world @ mount
            else:
                side = 1.0 if zlib.crc32(cam.name.encode()) % 2 else -1.0
                eye_local = np.array([rng.uniform(-0.15, 0.05), side * rng.uniform(0.45, 0.6),
                                      rng.uniform(0.45, 0.6), 1.0])
                eye = (base_mat @ eye_local)[:3]
                pose = _look_at(eye, mid + rng.normal(0, 0.02, 3))
                cam_poses[cam.name] = np.repeat(pose[None], T, axis=0)

        intr = {}
        for cam in self.cams:
            f = (H / 2.0) / np.tan(np.deg2rad(cam.fovy_deg) / 2.0)
            intr[cam.name] = np.array([[f, 0, W / 2.0], [0, f, H / 2.0], [0, 0, 1.0]])

        # --- image points of the two objects in every camera
        points: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        objects = {"pickup_obj": (obj, 0.035), "place_receptacle": (
            np.repeat(rec_pos[None], T, axis=0), 0.07)}
        for cam in self.cams:
            for key, (pos, radius) in objects.items():
                centre, rad_px, vis = _project(pos, radius, cam_poses[cam.name], intr[cam.name],
                                               W, H)
                if cam.on_wrist and key == "pickup_obj":
                    vis = vis & ~((t >= i_grasp) & (t < i_release) & (rng.random(T) < 0.6))
                if case == "wrist_not_visible" and cam.on_wrist:
                    vis = vis.copy()
                    vis[: max(1, T // 8)] = False
                if cam.name == self.check_cam:
                    vis = vis.copy()
                    if case == "visibility_not_visible" and key == "pickup_obj":
                        vis[: max(1, min(3, T - 1))] = False  # occluded at the start
                    elif not vis[0]:
                        # The camera is aimed at the workspace, so this is a rare edge;
                        # the validator needs the object in view at t=0.
                        vis[0] = True
                        centre[0] = np.clip(centre[0], [2, 2], [W - 3, H - 3])
                pts, n = _sample_points(rng, centre, rad_px, vis, W, H)
                points.setdefault(key, {})[cam.name] = (pts, n)
                tr.draw.setdefault(cam.name, {})[key] = (centre, rad_px, vis)

        # --- joint-space commands, aligned so action row i+1 drives state i -> i+1
        cmd_arm = arm.copy()
        cmd_arm[1:] = arm[1:] + 0.5 * (arm[1:] - arm[:-1])
        cmd_grip = np.where((t >= t_grasp) & (t < t_place + 1), 255.0, 0.0)
        ee_local = _fk(cmd_arm)
        ee7 = _mat_to_pose7(ee_local)
        twist = np.zeros((T, 6))
        if T > 2:
            twist[2:] = _body_twist(ee_local[1:-1], ee_local[2:], dt)

        qpos_rows, qvel_rows = [], []
        for i in range(T):
            qpos_rows.append({"base": [], "arm": arm[i].tolist(),
                              "gripper": gripper[i].tolist()})
            qvel_rows.append({"base": [], "arm": arm_vel[i].tolist(),
                              "gripper": grip_vel[i].tolist()})
        f32 = np.float32
        rows = {k: [] for k in ("commanded_action", "joint_pos", "joint_pos_rel", "ee_pose",
                                "ee_twist")}
        for i in range(T):
            if i == T - 1 and T > 1:
                for k in rows:  # every action sensor returns {} at the terminal step
                    rows[k].append({})
                continue
            # Row 0 is the reset dummy: commands equal the initial state, deltas zero.
            ca = {"arm": cmd_arm[i].astype(f32).tolist(), "gripper": [float(cmd_grip[i])]}
            rows["commanded_action"].append(ca)
            rows["joint_pos"].append(ca)
            rel = np.zeros(7) if i == 0 else cmd_arm[i] - arm[i - 1]
            rows["joint_pos_rel"].append({"arm": rel.astype(f32).tolist()})
            rows["ee_pose"].append({"arm": ee7[i].astype(f32).tolist()})
            rows["ee_twist"].append({"arm": twist[i].astype(f32).tolist()})

        d = tr.data
        d["obs/agent/qpos"] = _json_rows(qpos_rows)
        d["obs/agent/qvel"] = _json_rows(qvel_rows)
        for k, r in rows.items():
            d[f"actions/{k}"] = _json_rows(r)
        d["obs/extra/robot_base_pose"] = np.repeat(
            np.concatenate([base_pos, base_quat])[None], T, axis=0).astype(np.float32)
        d["obs/extra/tcp_pose"] = _mat_to_pose7(tcp_world).astype(np.float32)
        phase = np.searchsorted(times[1:-1], t, side="right").astype(np.int32)
        d["obs/extra/policy_phase"] = phase
        d["obs/extra/policy_num_retries"] = np.zeros(T, dtype=np.int32)
        if old_format:
            d["obs/extra/object_image_points"] = _old_format_points(points, T, case,
                                                                    self.check_cam)
        else:
            for key, per_cam in points.items():
                for cam_name, (pts, n) in per_cam.items():
                    base = f"obs/extra/object_image_points/{key}/{cam_name}"
                    d[f"{base}/points"] = pts
                    d[f"{base}/num_points"] = n
        for cam in self.cams:
            c2w = cam_poses[cam.name]
            base = f"obs/sensor_param/{cam.name}"
            d[f"{base}/cam2world_gl"] = c2w.astype(np.float32)
            d[f"{base}/extrinsic_cv"] = np.linalg.inv(c2w)[:, :3, :].astype(np.float32)
            d[f"{base}/intrinsic_cv"] = np.repeat(intr[cam.name][None], T, 0).astype(np.float32)
        tr.empty_groups.add("obs/sensor_data")

        pickup_name = str(rng.choice(_PICKUP_NAMES))
        rec_name = str(rng.choice(_RECEPTACLE_NAMES))
        pickup_body = f"{pickup_name}_{int(rng.integers(1, 40))}"
        rec_body = f"{rec_name}_{int(rng.integers(1, 40))}"
        d[f"env_states/actors/{pickup_body}"] = _actor_states(obj, obj_quat, dt)
        d[f"env_states/actors/{rec_body}"] = _actor_states(
            np.repeat(rec_pos[None], T, 0), rec_quat, dt)
        art = np.zeros((T, 31))
        full = np.concatenate([arm, gripper, arm_vel, grip_vel], axis=1)
        art[:, : full.shape[1]] = full
        d["env_states/articulations/panda"] = art.astype(np.float32)

        success = np.zeros(T, dtype=bool)
        success[int(min(T - 1, np.ceil(t_place + 4))):] = True
        d["rewards"] = success.astype(np.float32)
        terminated = np.zeros(T, dtype=bool)
        terminated[-1] = True
        d["terminated"] = terminated
        d["truncated"] = np.zeros(T, dtype=bool)
        d["success"] = success
        d["fail"] = ~success

        colour = str(rng.choice(_COLOURS))
        text = f"Pick up the {colour} {pickup_name.replace('_', ' ')} and place it in the " \
               f"{rec_name}."
        tr.obs_scene = json.dumps({
            "task_type": "pick_and_place",
            "task_description": text,
            "text": text,
            "policy_dt_ms": POLICY_DT_MS,
            "referral_expressions": {
                "pickup_obj": [f"the {colour} {pickup_name.replace('_', ' ')}",
                               pickup_name.replace("_", " ")],
                "place_receptacle": [f"the {rec_name}", rec_name],
            },
            "object_name": pickup_body,
            "place_receptacle_name": rec_body,
        })
        wrist = next((c for c in self.cams if c.on_wrist), None)
        if wrist is not None:
            tr.cam_height = cam_poses[wrist.name][:, 2, 3] - (obj_pos0[2] - 0.02)

        _apply_case(tr, case, self.check_cam)
        return tr

    # ------------------------------------------------------------------ videos

    def _submit(self, fn, *args) -> Future:
        # Encoding dominates generation and PyAV releases the GIL while x264 works,
        # so MP4s are written in the background while the next trajectory is built.
        # The queue is bounded so a huge run never holds many trajectories in memory.
        if self.pool is None:
            fut: Future = Future()
            fut.set_result(fn(*args))
            return fut
        while len(self._pending) >= 2 * self.workers:
            self._pending.pop(0).result()
        fut = self.pool.submit(fn, *args)
        self._pending.append(fut)
        return fut

    def write_videos(self, house_dir: Path, idx: int, suffix: str, tr: _Traj,
                     case: str) -> dict:
        """Write the episode's MP4s; returns {sensor_data key: {file, frames, status}}."""
        if not self.video:
            return {}
        out: dict[str, dict] = {}
        for cam in self.cams:
            jobs = [(cam.name, False)]
            if cam.record_depth:
                jobs.append((f"{cam.name}_depth", True))
            for key, is_depth in jobs:
                name = f"episode_{idx:08d}_{key}_{suffix}.mp4"
                n = tr.T
                status = "ok"
                if case == "video_missing_all" or (
                        case == "video_missing" and key == self.check_cam) or (
                        case == "no_depth_video" and is_depth):
                    out[key] = {"file": name, "frames": None, "status": "missing"}
                    continue
                if case == "video_frame_count" and key == self.check_cam:
                    n, status = max(1, tr.T - 3), "wrong_frame_count"
                if case == "depth_video_frame_count" and is_depth:
                    n, status = tr.T + 2, "wrong_frame_count"
                path = house_dir / name
                # One x264 thread per video: the pool already keeps every core busy.
                if is_depth:
                    write_depth_mp4(path, self._depth_frames(tr, cam.name, n), self.fps,
                                    preset="ultrafast", options=_X264_OPTS)
                else:
                    write_mp4(path, self._rgb_frames(tr, cam.name, n), self.fps,
                              preset="ultrafast", gop=30, options=_X264_OPTS)
                if case == "video_truncated" and key == self.check_cam:
                    raw = path.read_bytes()
                    path.write_bytes(raw[: int(len(raw) * 0.4)])
                    status = "truncated"
                if case == "video_corrupt_payload" and key == self.check_cam:
                    _zero_mdat(path)
                    status = "corrupt_payload"
                out[key] = {"file": name, "frames": n, "status": status}
        return out

    def _rgb_frames(self, tr: _Traj, cam: str, n: int):
        # A static per-camera backdrop with the two objects drawn where the camera
        # sees them: cheap to synthesise, and mostly-static content encodes fast.
        W, H = self.W, self.H
        tint = zlib.crc32(cam.encode()) % 97
        backdrop = np.empty((H, W, 3), dtype=np.uint8)
        backdrop[..., 0] = (self._xx * (200.0 / W) + tint).astype(np.uint8)
        backdrop[..., 1] = (self._yy * (180.0 / H) + 40).astype(np.uint8)
        backdrop[..., 2] = ((self._xx + self._yy) * (120.0 / (W + H)) + 60).astype(np.uint8)
        draw = tr.draw.get(cam, {})
        colours = {"pickup_obj": (220, 40, 40), "place_receptacle": (40, 60, 220)}
        for i in range(n):
            frame = backdrop.copy()
            j = min(i, tr.T - 1)
            for key in ("place_receptacle", "pickup_obj"):
                if key not in draw:
                    continue
                centre, rad, vis = draw[key]
                if vis[j]:
                    cx, cy = int(centre[j, 0]), int(centre[j, 1])
                    r = int(max(2, min(rad[j], 60)))
                    frame[max(0, cy - r):cy + r, max(0, cx - r):cx + r] = colours[key]
            yield frame

    def _depth_frames(self, tr: _Traj, cam: str, n: int):
        W, H = self.W, self.H
        height = tr.cam_height if tr.cam_height is not None else np.full(tr.T, 0.3)
        ramp = (self._yy / H) * 0.12 + (self._xx / W) * 0.03
        draw = tr.draw.get(cam, {}).get("pickup_obj")
        for i in range(n):
            j = min(i, tr.T - 1)
            depth = ramp + np.float32(np.clip(height[j], 0.08, 0.6))
            if draw is not None and draw[2][j]:
                cx, cy, r = int(draw[0][j, 0]), int(draw[0][j, 1]), int(max(2, min(draw[1][j],
                                                                                   60)))
                depth[max(0, cy - r):cy + r, max(0, cx - r):cx + r] -= np.float32(0.04)
            yield depth


# =========================================================================== case surgery


def _apply_case(tr: _Traj, case: str, check_cam: str) -> None:
    d = tr.data
    if case == "no_actions_group":
        for k in [k for k in d if k.startswith("actions/")]:
            del d[k]
    elif case == "empty_actions_group":
        for k in [k for k in d if k.startswith("actions/")]:
            del d[k]
        tr.empty_groups.add("actions")
    elif case == "action_length_mismatch":
        d["actions/joint_pos"] = d["actions/joint_pos"][:-1]
    elif case == "action_json_truncated":
        arr = d["actions/ee_pose"]
        i = tr.T // 2
        raw = arr[i].tobytes().rstrip(b"\x00")
        arr[i] = 0
        cut = raw[: len(raw) // 2]
        arr[i, : len(cut)] = np.frombuffer(cut, dtype=np.uint8)
    elif case == "no_agent":
        for k in [k for k in d if k.startswith("obs/agent/")]:
            del d[k]
    elif case == "agent_missing_qvel":
        del d["obs/agent/qvel"]
    elif case == "agent_length_mismatch":
        d["obs/agent/qvel"] = d["obs/agent/qvel"][:-1]
    elif case == "agent_json_corrupt":
        arr = d["obs/agent/qpos"]
        i = tr.T // 3
        end = int(np.flatnonzero(arr[i])[-1]) + 1
        arr[i, end // 3: end // 3 + 6] = 0  # a torn write: NULs inside the JSON text
    elif case == "visibility_object_missing":
        for k in [k for k in d if k.startswith("obs/extra/object_image_points/place_receptacle/")]:
            del d[k]
    elif case == "visibility_camera_missing":
        prefix = f"obs/extra/object_image_points/pickup_obj/{check_cam}/"
        for k in [k for k in d if k.startswith(prefix)]:
            del d[k]


def _old_format_points(points, T: int, case: str, check_cam: str) -> np.ndarray:
    rows = []
    for i in range(T):
        row = {}
        for key, per_cam in points.items():
            row[key] = {}
            for cam_name, (pts, n) in per_cam.items():
                k = int(n[i, 0])
                row[key][cam_name] = [[float(x), float(y)] for x, y in pts[i, :k]]
        rows.append(row)
    if case == "old_format_not_visible":
        rows[0]["place_receptacle"][check_cam] = []
    longest = max(len(json.dumps(r, sort_keys=True, separators=(",", ":"))) for r in rows)
    # The old sensor used the default 2000-byte rows; widen only if the camera list
    # would not fit (truncation would turn the sample into an accidental JSON error).
    width = max(STR_MAX_LEN, -(-longest // 1000) * 1000)
    return _json_rows(rows, width)


# =========================================================================== writing


def _write_traj(f: h5py.File, key: str, tr: _Traj) -> None:
    # Untimed objects and a fixed creation order keep the layout stable for a seed
    # (HDF5 otherwise stamps every object, groups included, with its ctime). Bytes
    # can still differ run to run: the LZF filter leaves its hash table
    # uninitialised, so its output (not the decompressed data) is not reproducible.
    g = _untimed_group(f, key)
    for path, arr in tr.data.items():
        parent, _, name = path.rpartition("/")
        where = _untimed_group(g, parent) if parent else g
        where.create_dataset(name, data=arr, compression=COMPRESSION, track_times=False)
    for path in sorted(tr.empty_groups):
        _untimed_group(g, path)
    g.create_dataset("obs_scene", data=tr.obs_scene, dtype=h5py.string_dtype("utf-8"),
                     track_times=False)


def _untimed_group(parent: h5py.Group, path: str) -> h5py.Group:
    g = parent
    for name in path.split("/"):
        if name in g:
            g = g[name]
            continue
        gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
        gcpl.set_obj_track_times(False)
        g = h5py.Group(h5py.h5g.create(g.id, name.encode("utf-8"), gcpl=gcpl))
    return g


def _json_rows(dicts: list, width: int = STR_MAX_LEN) -> np.ndarray:
    out = np.zeros((len(dicts), width), dtype=np.uint8)
    for i, d in enumerate(dicts):
        raw = json.dumps(d, sort_keys=True, separators=(",", ":")).encode("utf-8")
        if len(raw) > width:
            raise ValueError(f"JSON row of {len(raw)} bytes exceeds width {width}")
        out[i, : len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    return out


def _zero_mdat(path: Path) -> None:
    """Zero the media payload but keep every box header: opens, counts, won't decode."""
    raw = bytearray(path.read_bytes())
    i = raw.find(b"mdat")
    if i < 4:
        raise RuntimeError(f"{path}: no mdat box")
    size = int.from_bytes(raw[i - 4:i], "big")
    start = i + 4
    if size == 1:
        size = int.from_bytes(raw[i + 4:i + 12], "big")
        start = i + 12
    end = len(raw) if size == 0 else i - 4 + size
    raw[start:end] = bytes(end - start)
    path.write_bytes(bytes(raw))



def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# =========================================================================== manifest


def _manifest(*, files, split_names, cams, check_cam, video, params) -> dict:
    rules_covered = sorted({t["expected"]["reason"] for f in files for t in f["trajectories"]
                            if t["expected"]["reason"]}
                           | {f["expected_file"]["reason"] for f in files if f["expected_file"]})
    expected_index: dict[str, dict] = {}
    for split in split_names:
        root = split or "."
        index: dict[str, dict] = {}
        for f in files:
            if f["split"] != split or not f["readable"]:
                continue
            valid = {t["key"]: t["T"] for t in f["trajectories"] if t["expected"]["valid"]}
            if valid:
                rel = f["path"].split("/", 1)[1] if split else f["path"]
                index.setdefault(f["house"], {})[rel] = valid
        expected_index[root] = index
    n_traj = sum(len(f["trajectories"]) for f in files)
    n_valid = sum(t["expected"]["valid"] for f in files for t in f["trajectories"])
    return {
        "schema": MANIFEST_SCHEMA,
        "params": params,
        "split_dirs": [s or "." for s in split_names],
        "cameras": [{"name": c.name, "record_depth": c.record_depth, "fovy_deg": c.fovy_deg}
                    for c in cams],
        "check_visibility": [[check_cam, obj] for obj in CHECK_OBJECTS],
        "assumes": {
            "repair_video_paths_ran": True,
            "min_steps": 3,
            "frames_to_check": 3,
            "video_checks": bool(video),
            "check_visibility": [[check_cam, obj] for obj in CHECK_OBJECTS],
        },
        "rule_ids": list(RULE_IDS),
        "rules_covered": rules_covered,
        "files": files,
        "expected_index": expected_index,
        "totals": {
            "files": len(files),
            "readable_files": sum(f["readable"] for f in files),
            "trajectories": n_traj,
            "valid": n_valid,
            "invalid": n_traj - n_valid,
            "steps": sum(t["T"] for f in files for t in f["trajectories"]),
        },
    }


# =========================================================================== helpers


def _camera_specs(cameras) -> tuple[CameraSpec, ...]:
    if cameras is None:
        return DEFAULT_CAMERAS
    out = []
    for c in cameras:
        if isinstance(c, CameraSpec):
            out.append(c)
        elif isinstance(c, str):
            out.append(CameraSpec(c, record_depth=False,
                                  fovy_deg=58.0 if "wrist" in c else 45.0))
        else:
            name, depth = c
            out.append(CameraSpec(str(name), bool(depth),
                                  fovy_deg=58.0 if "wrist" in str(name) else 45.0))
    names = [c.name for c in out]
    if not out or len(set(names)) != len(names):
        raise ValueError(f"cameras must be non-empty and unique, got {names}")
    return tuple(out)


def _check_camera(cams) -> str:
    """The camera the visibility expectations are about: the reference pair's camera
    when present, else the first static (non-wrist) camera, else the first."""
    names = [c.name for c in cams]
    if CHECK_CAMERA in names:
        return CHECK_CAMERA
    return next((c.name for c in cams if not c.on_wrist), names[0])



def _house_ids(seed: int, n: int) -> list[int]:
    rng = seeded_rng(seed, 0)
    pool = np.arange(1, max(1000, 4 * n))
    return [int(x) for x in rng.choice(pool, size=n, replace=False)]




# Franka (Panda / FR3) kinematics, modified DH (Craig): (a_{i-1}, d_i, alpha_{i-1}).
_DH = np.array([
    (0.0, 0.333, 0.0),
    (0.0, 0.0, -np.pi / 2),
    (0.0, 0.316, np.pi / 2),
    (0.0825, 0.0, np.pi / 2),
    (-0.0825, 0.384, -np.pi / 2),
    (0.0, 0.0, np.pi / 2),
    (0.088, 0.0, np.pi / 2),
])
_FLANGE_D = 0.107
_TCP_D = 0.16  # Robotiq 2F-85 fingertip centre beyond the flange (approximate)
_HOME = np.array([0.0, -np.pi / 4, 0.0, -3 * np.pi / 4, 0.0, np.pi / 2, np.pi / 4])
_Q_LO = np.array([-2.74, -1.78, -2.90, -3.04, -2.80, 0.54, -3.00])
_Q_HI = np.array([2.74, 1.78, 2.90, -0.15, 2.80, 4.50, 3.00])


def _fk(q: np.ndarray) -> np.ndarray:
    """(T,7) joint angles -> (T,4,4) TCP pose in the robot base frame."""
    T = q.shape[0]
    out = np.broadcast_to(np.eye(4), (T, 4, 4)).copy()
    for j, (a, d, alpha) in enumerate(_DH):
        ct, st = np.cos(q[:, j]), np.sin(q[:, j])
        ca, sa = np.cos(alpha), np.sin(alpha)
        m = np.zeros((T, 4, 4))
        m[:, 0, 0], m[:, 0, 1], m[:, 0, 3] = ct, -st, a
        m[:, 1, 0], m[:, 1, 1], m[:, 1, 2], m[:, 1, 3] = st * ca, ct * ca, -sa, -d * sa
        m[:, 2, 0], m[:, 2, 1], m[:, 2, 2], m[:, 2, 3] = st * sa, ct * sa, ca, d * ca
        m[:, 3, 3] = 1.0
        out = out @ m
    tool = np.eye(4)
    c, s = np.cos(-np.pi / 4), np.sin(-np.pi / 4)
    tool[:2, :2] = [[c, -s], [s, c]]
    tool[2, 3] = _FLANGE_D + _TCP_D
    return out @ tool


def _pose_mat(pos: np.ndarray, rot: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = pos
    return m


def _quat_to_mat(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _mat_to_quat(R: np.ndarray) -> np.ndarray:
    """(T,3,3) -> (T,4) scalar-first, sign-continuous along T."""
    T = R.shape[0]
    q = np.empty((T, 4))
    tr = R[:, 0, 0] + R[:, 1, 1] + R[:, 2, 2]
    for i in range(T):
        m = R[i]
        if tr[i] > 0:
            s = np.sqrt(tr[i] + 1.0) * 2
            q[i] = (0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s,
                    (m[1, 0] - m[0, 1]) / s)
        elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
            s = np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
            q[i] = ((m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s,
                    (m[0, 2] + m[2, 0]) / s)
        elif m[1, 1] > m[2, 2]:
            s = np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
            q[i] = ((m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s,
                    (m[1, 2] + m[2, 1]) / s)
        else:
            s = np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
            q[i] = ((m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s,
                    (m[1, 2] + m[2, 1]) / s, 0.25 * s)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    if q[0, 0] < 0:
        q[0] = -q[0]
    for i in range(1, T):
        if np.dot(q[i], q[i - 1]) < 0:
            q[i] = -q[i]
    return q


def _mat_to_pose7(M: np.ndarray) -> np.ndarray:
    return np.concatenate([M[:, :3, 3], _mat_to_quat(M[:, :3, :3])], axis=1)


def _body_twist(M0: np.ndarray, M1: np.ndarray, dt: float) -> np.ndarray:
    """Body-frame twist (v, w) taking pose M0 to M1 in dt, small-angle log map."""
    R0 = M0[:, :3, :3]
    dR = np.swapaxes(R0, 1, 2) @ M1[:, :3, :3]
    v = np.einsum("tji,tj->ti", R0, M1[:, :3, 3] - M0[:, :3, 3]) / dt
    w = 0.5 * np.stack([dR[:, 2, 1] - dR[:, 1, 2], dR[:, 0, 2] - dR[:, 2, 0],
                        dR[:, 1, 0] - dR[:, 0, 1]], axis=1) / dt
    return np.concatenate([v, w], axis=1)


def _look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenGL camera-to-world: the camera looks down its -z axis, +y up."""
    fwd = target - eye
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    return _pose_mat(eye, np.stack([right, up, -fwd], axis=1))


def _project(pos: np.ndarray, radius: float, cam2world: np.ndarray, K: np.ndarray, W: int,
             H: int):
    """World points (T,3) -> pixel centres (T,2), apparent radius (T,), visible (T,)."""
    world2cam = np.linalg.inv(cam2world)
    p = np.einsum("tij,tj->ti", world2cam[:, :3, :3], pos) + world2cam[:, :3, 3]
    depth = -p[:, 2]
    safe = np.where(depth > 1e-3, depth, 1e-3)
    u = K[0, 0] * p[:, 0] / safe + K[0, 2]
    v = K[1, 2] - K[1, 1] * p[:, 1] / safe
    rad = K[1, 1] * radius / safe
    vis = (depth > 0.03) & (u > -rad) & (u < W + rad) & (v > -rad) & (v < H + rad)
    centre = np.stack([np.clip(u, 0, W - 1), np.clip(v, 0, H - 1)], axis=1)
    return centre, rad, vis


def _sample_points(rng, centre, rad, vis, W, H):
    """ObjectImagePointsSensor output: up to 10 in-mask pixels (x/W, y/H), 4 dp, NaN pad."""
    T = centre.shape[0]
    area = np.pi * np.maximum(rad, 0.5) ** 2
    k = np.where(vis, np.clip(area // 2, 1, MAX_POINTS), 0).astype(np.int32)
    ang = rng.uniform(0, 2 * np.pi, (T, MAX_POINTS))
    r = np.sqrt(rng.uniform(0, 1, (T, MAX_POINTS))) * np.maximum(rad * 0.7, 0.5)[:, None]
    # Pixel (row, col) of mask samples, so coordinates are whole pixels over W/H.
    col = np.clip(np.round(centre[:, :1] + r * np.cos(ang)), 0, W - 1)
    row = np.clip(np.round(centre[:, 1:] + r * np.sin(ang)), 0, H - 1)
    pts = np.stack([np.round(col / W, 4), np.round(row / H, 4)], axis=-1).astype(np.float32)
    pts[np.arange(MAX_POINTS)[None, :] >= k[:, None]] = np.nan
    return pts, k[:, None]


def _actor_states(pos: np.ndarray, quat: np.ndarray, dt: float) -> np.ndarray:
    T = pos.shape[0]
    out = np.zeros((T, 13))
    out[:, :3] = pos
    out[:, 3:7] = quat
    if T > 1:
        out[:, 7:10] = np.gradient(pos, dt, axis=0)
    return out.astype(np.float32)
