"""Synthetic ReAct raw recordings: realistic episode files plus deliberately broken ones.

Writes ``root/data/<task>/<date>/episode_NNN.h5`` in the raw layout of the .pt-era
recorder (reference ``react-tactile-and-owa.md`` section 1.1): ``metadata/`` attrs,
30 Hz ``timestamps``, three RealSense cameras (BGR colour + uint16 depth in mm), two
GelSight sensors (RGB frames) and three OptiTrack rigid bodies at ~120 Hz
(``[x, y, z, qx, qy, qz, qw]``, metres, unit quaternions). Frame datasets are chunked
one frame per chunk and Blosc/LZ4/SHUFFLE-compressed exactly as the recorder writes
them; ``timestamps`` and OptiTrack streams are uncompressed.

Real recordings are 480x640; the default ``height``/``width`` here are smaller so the
sample is quick to write and read. Content is cheap but plausible: smooth gradients with
a moving blob for colour, a tilted plane with a nearer blob for depth, and GelSight
frames that stay flat grey except for a press blob during a few frames.

With ``with_faults`` four extra episodes follow the clean ones (numbered on):

- ``truncated``: a copy of a valid episode cut to half its size -> ``unreadable_file``;
- ``frame_count_mismatch``: ``gelsight/right/frames`` has fewer frames than the cameras;
- ``missing_modality``: no ``gelsight/left`` group;
- ``single_sided``: ``optitrack/sensor_right`` is empty (N=0), a recording made with
  ``--active_sensors left``. This is VALID for integrity; only ``active_sensors`` shows it.

``sample_manifest.json`` records, per file, what a correct integrity check concludes:
``frames`` (T from ``timestamps``; null when the file cannot be opened),
``expected_integrity`` ``{ok, reason}`` (``reason`` a rule id or null) and
``active_sensors`` (sides whose OptiTrack stream is non-empty; ``[]`` when unreadable).

Pure library: no Prefect.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

from robocurate.io.atomic import atomic_write_bytes
from robocurate.samples.motion import min_jerk_path, seeded_rng

__all__ = [
    "CASES",
    "GELSIGHT_SERIALS",
    "MANIFEST_NAME",
    "REALSENSE_SERIALS",
    "RULE_IDS",
    "generate_react_dataset",
]

MANIFEST_NAME = "sample_manifest.json"
MANIFEST_SCHEMA = "robocurate.samples.react/1"

FPS = 30
OPTITRACK_HZ = 120.0
# cam0 right, cam1 left, cam2 middle
REALSENSE_SERIALS = ("143322063538", "104122062574", "217222066989")
GELSIGHT_SERIALS = ("2DUPB53G", "2BKRDTAD")  # left, right
RIGID_BODIES = ("motherboard", "sensor_left", "sensor_right")
REAL_HEIGHT, REAL_WIDTH = 480, 640

RULE_IDS = ("unreadable_file", "frame_count_mismatch", "missing_modality")

# Episode case -> the integrity rule a correct checker must report (None = ok).
CASES: dict[str, str | None] = {
    "clean": None,
    "truncated": "unreadable_file",
    "frame_count_mismatch": "frame_count_mismatch",
    "missing_modality": "missing_modality",
    "single_sided": None,
}
_FAULT_ORDER = ("truncated", "frame_count_mismatch", "missing_modality", "single_sided")

_CASE_NOTES = {
    "clean": "valid episode, both sensors tracked",
    "truncated": "copy of a valid episode cut to half its size: HDF5 cannot open it",
    "frame_count_mismatch": "gelsight/right/frames has fewer frames than timestamps/cameras",
    "missing_modality": "no gelsight/left group",
    "single_sided": "optitrack/sensor_right is empty (N=0): single-sided recording, valid",
}

_GS_MISMATCH_DROP = 7  # frames missing from gelsight/right in the mismatch case


def _blosc() -> dict:
    return dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))


# =========================================================================== public API


def generate_react_dataset(
    root: str | os.PathLike,
    *,
    task: str = "motherboard",
    date: str = "2026-06-01",
    episodes: int = 4,
    frames: int = 60,
    seed: int = 0,
    height: int = 120,
    width: int = 160,
    with_faults: bool = True,
) -> dict:
    """Write ``episodes`` clean raw episodes (+ 4 faulty ones with ``with_faults``).

    Returns the manifest, also written to ``root/sample_manifest.json``.
    ``height``/``width`` default to 120x160 for speed; real recordings are 480x640.
    """
    root = Path(root)
    if episodes < 0:
        raise ValueError(f"episodes must be >= 0, got {episodes}")
    if frames < 2 * _GS_MISMATCH_DROP:
        raise ValueError(f"frames must be >= {2 * _GS_MISMATCH_DROP}, got {frames}")
    if height < 16 or width < 16:
        raise ValueError(f"height and width must be >= 16, got {height}x{width}")
    datetime.strptime(date, "%Y-%m-%d")  # validates the date format
    ep_dir = root / "data" / task / date
    ep_dir.mkdir(parents=True, exist_ok=True)

    cases = ["clean"] * episodes + (list(_FAULT_ORDER) if with_faults else [])
    gen = _EpisodeWriter(seed=seed, task=task, date=date, T=frames, H=height, W=width)
    entries = []
    for idx, case in enumerate(cases):
        path = ep_dir / f"episode_{idx:03d}.h5"
        if case == "truncated":
            fd, full = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".full", dir=ep_dir)
            os.close(fd)
            try:
                gen.write(Path(full), idx, "clean")
                raw = Path(full).read_bytes()
            finally:
                Path(full).unlink(missing_ok=True)
            atomic_write_bytes(path, raw[: len(raw) // 2])
            frames_, active = None, []
        else:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=ep_dir)
            os.close(fd)
            try:
                gen.write(Path(tmp), idx, case)
                os.chmod(tmp, 0o644)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            frames_ = frames
            active = ["left"] if case == "single_sided" else ["left", "right"]
        reason = CASES[case]
        entries.append({
            "path": path.relative_to(root).as_posix(),
            "episode": f"ep_{idx:03d}",
            "case": case,
            "note": _CASE_NOTES[case],
            "frames": frames_,
            "expected_integrity": {"ok": reason is None, "reason": reason},
            "active_sensors": active,
        })

    manifest = {
        "schema": MANIFEST_SCHEMA,
        "params": dict(task=task, date=date, episodes=episodes, frames=frames, seed=seed,
                       height=height, width=width, with_faults=with_faults),
        "fps": FPS,
        "real_frame_size": [REAL_HEIGHT, REAL_WIDTH],
        "rule_ids": list(RULE_IDS),
        "rules_covered": sorted({e["expected_integrity"]["reason"] for e in entries
                                 if e["expected_integrity"]["reason"]}),
        "files": entries,
    }
    atomic_write_bytes(root / MANIFEST_NAME,
                        (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    return manifest


# =========================================================================== generator


class _EpisodeWriter:
    def __init__(self, *, seed: int, task: str, date: str, T: int, H: int, W: int):
        self.seed, self.task, self.date = seed, task, date
        self.T, self.H, self.W = T, H, W
        yy, xx = np.mgrid[0:H, 0:W]
        self.yy = (yy / max(H - 1, 1)).astype(np.float32)  # 0..1
        self.xx = (xx / max(W - 1, 1)).astype(np.float32)
        day = datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=timezone.utc)
        self.day_epoch = day.timestamp()

    def write(self, path: Path, idx: int, case: str) -> None:
        rng = seeded_rng(self.seed, 7, idx)
        T, H, W = self.T, self.H, self.W
        start_s = 10 * 3600 + 120 * idx + int(rng.integers(0, 60))  # 10:00 + 2 min/episode
        t0 = self.day_epoch + start_s
        created = datetime.fromtimestamp(t0, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        ts = t0 + np.arange(T) / FPS + rng.normal(0.0, 4e-4, T)
        ts = np.maximum.accumulate(ts).astype(np.float64)
        s = np.linspace(0.0, 1.0, T, dtype=np.float32)  # episode phase per frame

        with h5py.File(path, "w") as f:
            meta = f.create_group("metadata")
            meta.attrs["fps"] = FPS
            meta.attrs["realsense_serials"] = list(REALSENSE_SERIALS)
            meta.attrs["gelsight_serials"] = list(GELSIGHT_SERIALS)
            meta.attrs["created_at"] = created
            meta.attrs["task"] = self.task
            f.create_dataset("timestamps", data=ts)

            for c in range(3):
                color, depth = self._camera(rng, c, s)
                g = f.create_group(f"realsense/cam{c}")
                g.create_dataset("color", data=color, chunks=(1, H, W, 3), **_blosc())
                g.create_dataset("depth", data=depth, chunks=(1, H, W), **_blosc())

            for side in ("left", "right"):
                if case == "missing_modality" and side == "left":
                    continue
                gs = self._gelsight(rng, side)
                if case == "frame_count_mismatch" and side == "right":
                    gs = gs[: T - _GS_MISMATCH_DROP]
                f.create_group(f"gelsight/{side}").create_dataset(
                    "frames", data=gs, chunks=(1, H, W, 3), **_blosc())

            ot_t = self._ot_times(rng, ts[0], ts[-1])
            for body in RIGID_BODIES:
                g = f.create_group(f"optitrack/{body}")
                if case == "single_sided" and body == "sensor_right":
                    t_b, pose = np.zeros(0), np.zeros((0, 7))
                else:
                    t_b, pose = ot_t, self._poses(rng, body, ot_t)
                g.create_dataset("timestamps", data=t_b.astype(np.float64))
                g.create_dataset("pose", data=pose.astype(np.float64))

    # ------------------------------------------------------------------ content

    def _camera(self, rng, c: int, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ang = rng.uniform(0, 2 * np.pi)
        grad = (np.cos(ang) * self.xx + np.sin(ang) * self.yy)  # (H,W)
        grad = (grad - grad.min()) / max(float(np.ptp(grad)), 1e-6)
        base = rng.uniform(40, 140, 3).astype(np.float32)  # B, G, R
        span = rng.uniform(40, 100, 3).astype(np.float32)
        way = rng.uniform(0.2, 0.8, (3, 2))
        centre = min_jerk_path(way, np.array([0.0, 0.5, 1.0]), s.astype(np.float64))  # (T,2)
        r2 = ((self.xx[None] - centre[:, 0, None, None]) ** 2
              + (self.yy[None] - centre[:, 1, None, None]) ** 2)
        blob = np.exp(-r2 / (2 * 0.06 ** 2)).astype(np.float32)  # (T,H,W)
        blob_bgr = np.array([30, 60, 200], np.float32)  # a reddish object, BGR order
        img = base + span * grad[None, :, :, None] * np.ones((1, 1, 1, 3), np.float32)
        img = img * (1 - blob[..., None]) + blob_bgr * blob[..., None]
        color = np.clip(img, 0, 255).astype(np.uint8)
        plane = rng.uniform(550, 750) + rng.uniform(100, 250) * self.yy  # mm, tilted table
        depth = plane[None] - 120.0 * blob
        depth = np.clip(depth, 0, 65535).astype(np.uint16)
        depth[:, :2, :] = 0  # invalid border rows, as the aligned RealSense depth has
        return color, depth

    def _gelsight(self, rng, side: str) -> np.ndarray:
        T, H, W = self.T, self.H, self.W
        grey = np.array([118, 124, 131] if side == "left" else [121, 122, 128], np.float32)
        vign = 1.0 - 0.15 * ((self.xx - 0.5) ** 2 + (self.yy - 0.5) ** 2)
        flat = np.clip(grey * vign[..., None], 0, 255).astype(np.uint8)
        frames = np.broadcast_to(flat, (T, H, W, 3)).copy()
        n_press = max(3, T // 10)
        start = int(rng.integers(T // 4, T - n_press - T // 4 + 1))
        cx, cy = rng.uniform(0.35, 0.65, 2)
        r2 = (self.xx - cx) ** 2 + (self.yy - cy) ** 2
        for k in range(n_press):
            depth = np.sin(np.pi * (k + 1) / (n_press + 1))
            press = depth * np.exp(-r2 / (2 * 0.08 ** 2))
            shade = np.array([70, 40, -30], np.float32)  # RGB tint of a contact
            img = flat.astype(np.float32) + press[..., None] * shade
            frames[start + k] = np.clip(img, 0, 255).astype(np.uint8)
        return frames

    def _ot_times(self, rng, t_first: float, t_last: float) -> np.ndarray:
        t_a = t_first - rng.uniform(0.02, 0.08)
        t_b = t_last + rng.uniform(0.02, 0.08)
        n = int(np.floor((t_b - t_a) * OPTITRACK_HZ)) + 1
        t = t_a + np.arange(n) / OPTITRACK_HZ + rng.normal(0.0, 5e-4, n)
        return np.maximum.accumulate(t)

    def _poses(self, rng, body: str, t: np.ndarray) -> np.ndarray:
        n = len(t)
        s = (t - t[0]) / max(t[-1] - t[0], 1e-9)
        if body == "motherboard":
            pos = np.tile(rng.uniform([-0.05, -0.05, 0.70], [0.05, 0.05, 0.75]), (n, 1))
            pos = pos + rng.normal(0, 1e-4, (n, 3))
            quat = np.tile(_yaw_quat(rng.uniform(-0.2, 0.2)), (n, 1))
        else:
            sign = 1.0 if body == "sensor_left" else -1.0
            start = np.array([sign * 0.15, 0.0, 0.90]) + rng.normal(0, 0.01, 3)
            touch = np.array([sign * 0.03, 0.0, 0.78]) + rng.normal(0, 0.005, 3)
            way = np.stack([start, touch, start])
            pos = min_jerk_path(way, np.array([0.0, 0.5, 1.0]), s) + rng.normal(0, 1e-4, (n, 3))
            yaw = sign * 0.3 * np.sin(np.pi * s)
            quat = np.stack([_yaw_quat(a) for a in yaw]) if n else np.zeros((0, 4))
        quat = quat + rng.normal(0, 1e-4, quat.shape)
        quat /= np.linalg.norm(quat, axis=1, keepdims=True)
        return np.concatenate([pos, quat], axis=1)


def _yaw_quat(a: float) -> np.ndarray:
    """Unit quaternion [qx, qy, qz, qw] for a rotation of ``a`` rad about z."""
    return np.array([0.0, 0.0, np.sin(a / 2), np.cos(a / 2)])

