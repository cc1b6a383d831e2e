"""Stage 2: which trajectories are usable (scripts/data/validate_trajectories.py rules).

Rules run in the original's order and the first failure decides the reason. Each rule
has an id (the ``rule`` of the finding), so reports and tests can tell them apart.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from robocurate.io.video import VideoError, count_frames, decode_frames_at, frames_to_check_indices
from robocurate.molmo.jsonrows import JsonRowError, decode_row, decode_rows
from robocurate.molmo.layout import traj_index
from robocurate.molmo.options import MolmoOptions
from robocurate.molmo.repair import decode_filename


class Invalid(Exception):
    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule = rule
        self.message = message


def traj_keys(h5) -> tuple[list[str], bool]:
    """Trajectory keys sorted by index, and whether the indices are exactly 0..N-1."""
    keys = [k for k in h5.keys() if k.startswith("traj_")]
    try:
        indexed = sorted((traj_index(k), k) for k in keys)
    except ValueError:
        return sorted(keys), False
    return [k for _, k in indexed], [i for i, _ in indexed] == list(range(len(indexed)))


def _check_json(ds: h5py.Dataset, rule: str, name: str, decoded: dict | None) -> None:
    try:
        rows = decode_rows(ds[()])
    except JsonRowError as exc:
        raise Invalid(rule, f"{name}: malformed JSON at {exc}") from None
    if decoded is not None:  # statistics of the same trajectory reuse the parsed rows
        decoded[name] = rows


def _check_actions(traj: h5py.Group, min_steps: int, decoded: dict | None) -> int:
    actions = traj.get("actions")
    if not isinstance(actions, h5py.Group) or len(actions) == 0:
        raise Invalid("no_actions", "no actions group, or it is empty")
    n_actions = None
    for name in actions.keys():
        ds = actions[name]
        if not isinstance(ds, h5py.Dataset):
            raise Invalid("action_json", f"actions/{name} is not a dataset")
        if n_actions is None:
            n_actions = ds.shape[0]
        if ds.shape[0] != n_actions:
            raise Invalid("action_length_mismatch",
                          f"actions/{name} has {ds.shape[0]} rows, expected {n_actions}")
        if n_actions < min_steps:
            raise Invalid("too_few_steps", f"{n_actions} action rows < min steps {min_steps}")
        _check_json(ds, "action_json", f"actions/{name}", decoded)
    return n_actions


def _check_agent(traj: h5py.Group, n_actions: int, decoded: dict | None) -> None:
    agent = traj.get("obs/agent")
    if not isinstance(agent, h5py.Group):
        raise Invalid("no_agent", "obs/agent is missing")
    for key in ("qpos", "qvel"):
        if key not in agent:
            raise Invalid("agent_missing_key", f"obs/agent/{key} is missing")
    for name in agent.keys():
        ds = agent[name]
        if not isinstance(ds, h5py.Dataset):
            continue
        if ds.shape[0] != n_actions:
            raise Invalid("agent_length_mismatch",
                          f"obs/agent/{name} has {ds.shape[0]} rows, actions have {n_actions}")
        _check_json(ds, "agent_json", f"obs/agent/{name}", decoded)


def _visible_at_start(points, obj: str, camera: str) -> int:
    """Visible points of ``obj`` in ``camera`` at t=0, for either storage format."""
    if isinstance(points, h5py.Group):  # current: nested groups with num_points (T, 1)
        return int(np.asarray(points[obj][camera]["num_points"][0]).ravel()[0])
    return len(points[obj][camera])  # older: row 0 decoded, {obj: {cam: [[x, y], ...]}}


def _check_visibility(traj: h5py.Group, pairs) -> str | None:
    """Returns a warning when visibility cannot be checked (the original skips then)."""
    points = traj.get("obs/extra/object_image_points")
    if points is None:
        return "obs/extra/object_image_points is missing: visibility not checked"
    if not isinstance(points, h5py.Group):
        try:
            points = decode_row(points[0])
        except ValueError as exc:
            raise Invalid("visibility_object_missing",
                          f"object_image_points row 0 is not valid JSON: {exc}") from None
    for camera, obj in pairs:
        if obj not in points:
            raise Invalid("visibility_object_missing", f"no image points for object {obj}")
        if camera not in points[obj]:
            raise Invalid("visibility_camera_missing",
                          f"no image points for object {obj} in camera {camera}")
        if _visible_at_start(points, obj, camera) == 0:
            raise Invalid("visibility_not_visible",
                          f"object {obj} not visible in camera {camera} at t=0")
    return None


def _check_videos(traj: h5py.Group, h5_dir: Path, frames_to_check: int) -> None:
    sensor_data = traj.get("obs/sensor_data")
    if not isinstance(sensor_data, h5py.Group) or len(sensor_data) == 0:
        raise Invalid("video_missing", "obs/sensor_data is empty (no video linked)")
    # The original only checks linked videos; a camera whose video was never linked
    # (repair found no file) is just as unusable.
    cameras = traj.get("obs/sensor_param")
    for camera in (cameras.keys() if isinstance(cameras, h5py.Group) else ()):
        if camera not in sensor_data:
            raise Invalid("video_missing", f"no video linked for camera {camera}")
    n_steps = traj["obs/agent/qpos"].shape[0]
    for key in sensor_data.keys():
        name = decode_filename(sensor_data[key][()])
        path = h5_dir / name
        if not path.is_file():
            raise Invalid("video_missing", f"{key}: video {name} not found")
        try:
            n_frames = count_frames(path)
        except VideoError as exc:
            raise Invalid("video_undecodable", f"{key}: {exc}") from None
        if n_frames != n_steps:
            raise Invalid("video_frame_count",
                          f"{key}: video {name} has {n_frames} frames, trajectory has {n_steps} steps")
        if frames_to_check > 0:
            try:
                decode_frames_at(path, frames_to_check_indices(n_frames, frames_to_check))
            except VideoError as exc:
                raise Invalid("video_undecodable", f"{key}: {exc}") from None


def check_trajectory(traj: h5py.Group, h5_dir: Path, opts: MolmoOptions,
                     decoded: dict | None = None) -> str | None:
    """Raises Invalid on the first failing rule; returns a warning text or None.

    ``decoded``, when given, collects the parsed JSON rows by dataset key.
    """
    n_actions = _check_actions(traj, opts.min_steps, decoded)
    _check_agent(traj, n_actions, decoded)
    warning = _check_visibility(traj, opts.check_visibility) if opts.check_visibility else None
    if opts.check_video:
        _check_videos(traj, h5_dir, opts.frames_to_check)
    return warning


def validate_file(h5, h5_path: Path, opts: MolmoOptions, findings, on_valid=None) -> np.ndarray:
    """The ``valid_traj_mask`` for one open file; every invalid trajectory is a finding.

    ``on_valid(key, traj, decoded)`` runs right after a trajectory passes, while its
    parsed rows are at hand, so statistics do not parse them a second time.
    """
    keys, consecutive = traj_keys(h5)
    mask = np.zeros(len(keys), dtype=bool)
    if not consecutive:
        findings.add(h5_path, "nonconsecutive_indices",
                     f"trajectory keys are not traj_0..traj_{len(keys) - 1}: "
                     f"{', '.join(keys[:8])}{'...' if len(keys) > 8 else ''}; all marked invalid",
                     severity="warning")
        return mask
    h5_dir = Path(h5_path).parent
    for i, key in enumerate(keys):
        try:
            traj = h5[key]
            if not isinstance(traj, h5py.Group):
                raise Invalid("no_actions", f"{key} is not a group")
            decoded: dict = {}
            warning = check_trajectory(traj, h5_dir, opts, decoded)
        except Invalid as bad:
            findings.add(h5_path, bad.rule, bad.message, item=key, severity="warning")
            continue
        except (OSError, KeyError, ValueError) as exc:  # damaged HDF5 objects inside the file
            findings.add(h5_path, "unreadable_trajectory", f"{type(exc).__name__}: {exc}",
                         item=key, severity="error")
            continue
        if warning:
            findings.add(h5_path, "visibility_unchecked", warning, item=key, severity="info")
        mask[i] = True
        if on_valid is not None:
            on_valid(key, traj, decoded)
    return mask


def trajectory_lengths(h5, mask: np.ndarray, findings, h5_path) -> dict[str, int]:
    """{traj_i: T} of the valid trajectories, T from ``success`` (untrimmed), as the index."""
    keys, _ = traj_keys(h5)
    out: dict[str, int] = {}
    for i in np.flatnonzero(mask):
        key = keys[i]
        traj = h5[key]
        if "success" in traj:
            out[key] = int(traj["success"].shape[0])
        else:
            findings.add(h5_path, "no_success", "no success dataset; length taken from qpos",
                         item=key, severity="warning")
            out[key] = int(traj["obs/agent/qpos"].shape[0])
    return out
