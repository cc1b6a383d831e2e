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

With ``detector_faults`` seven more episodes follow (at least ``DETECT_MIN_FRAMES`` frames
each, camera and GelSight frames with +-1 sensor noise so that only a stall duplicates
them),
one failure mode each, for the failure detectors (reference 1.5):

- ``led_spikes``: a few GelSight frames with a large brightness jump -> ``intensity_spikes``;
- ``pose_teleport``: the left body jumps 0.3 m AND rotates 2 rad for 5 frames and back
  (a marker swap) -> ``pose_teleports_L``; the right body makes a fast (> 5 m/s) purely
  translational move that must NOT be flagged;
- ``ot_freeze_gap``: the right body's OT stream has a 1 s hole -> a freeze, ``ot_loss``;
- ``recorder_stall``: 20 ticks where all three cameras (and both GelSights) repeat the
  previous frame while both sensor poses hold bit-identically -> ``pipeline_stall``;
- ``operator_still``: 30 ticks where both sensors are truly still (OT reports bit-identical
  poses at full rate, no gap) and the cameras and gels only show noise -> ``real_still``;
- ``late_ot_start``: OptiTrack starts 1 s after the cameras -> a trim of ~30 frames;
- ``gelsight_drift``: the left gel's first frame is brighter than the rest, which then
  slowly brighten back: the p01 reference ends up far from frame 0 -> drift > 5.

``sample_manifest.json`` records, per file, what a correct integrity check concludes:
``frames`` (T from ``timestamps``; null when the file cannot be opened),
``expected_integrity`` ``{ok, reason}`` (``reason`` a rule id or null) and
``active_sensors`` (sides whose OptiTrack stream is non-empty; ``[]`` when unreadable);
and what the failure detection must conclude, ``expected_detect`` (null for files that
fail integrity): ``trim_offset`` (the 1.2 trim rule on the written streams),
``intervals_h5`` (mode -> the injected ``[a, b]`` raw-file frames; detected intervals must
cover them, every mode not listed must come out empty), ``freeze_events``
(``{side, verdict, h5_frames}`` with the injected frames), ``drift_warning`` (sides whose
reference drift must exceed 5), and for ``pose_teleport`` ``fast_translation_only``
(``{side, h5_frames}``: faster than 5 m/s, not a teleport).

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
    "DETECT_CASES",
    "DETECT_MIN_FRAMES",
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
    # Detector faults: valid files, only the failure detection flags them.
    "led_spikes": None,
    "pose_teleport": None,
    "ot_freeze_gap": None,
    "recorder_stall": None,
    "operator_still": None,
    "late_ot_start": None,
    "gelsight_drift": None,
}
_FAULT_ORDER = ("truncated", "frame_count_mismatch", "missing_modality", "single_sided")
DETECT_CASES = ("led_spikes", "pose_teleport", "ot_freeze_gap", "recorder_stall",
                "operator_still", "late_ot_start", "gelsight_drift")
DETECT_MIN_FRAMES = 120  # 4 s: room for a 1 s fault plus its +-1 s diagnosis window

_CASE_NOTES = {
    "clean": "valid episode, both sensors tracked",
    "truncated": "copy of a valid episode cut to half its size: HDF5 cannot open it",
    "frame_count_mismatch": "gelsight/right/frames has fewer frames than timestamps/cameras",
    "missing_modality": "no gelsight/left group",
    "single_sided": "optitrack/sensor_right is empty (N=0): single-sided recording, valid",
    "led_spikes": "GelSight LED flicker: left frames jump +45, one right frame +50",
    "pose_teleport": "left body jumps 0.3 m and rotates 2 rad for 5 frames (marker swap); "
                     "right body moves 0.35 m in 0.1 s without rotating (not a teleport)",
    "ot_freeze_gap": "right OptiTrack stream has a 1 s gap: the aligned pose freezes",
    "recorder_stall": "20 ticks where every camera and GelSight repeats its frame and both "
                      "sensor poses hold bit-identically",
    "operator_still": "both sensors held still for 30 ticks: bit-identical poses at full OT "
                      "rate, cameras and gels show only noise",
    "late_ot_start": "OptiTrack starts 1 s after the first camera frame: trim ~30 frames",
    "gelsight_drift": "left gel: frame 0 brighter than the rest, which slowly brighten back "
                      "(reference drift > 5)",
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
    detector_faults: bool = False,
) -> dict:
    """Write ``episodes`` clean raw episodes (+ 4 faulty ones with ``with_faults``, + 7
    detector-fault ones with ``detector_faults``, see the module doc).

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

    cases = (["clean"] * episodes + (list(_FAULT_ORDER) if with_faults else [])
             + (list(DETECT_CASES) if detector_faults else []))
    gen = _EpisodeWriter(seed=seed, task=task, date=date, T=frames, H=height, W=width)
    gen_long = _EpisodeWriter(seed=seed, task=task, date=date,
                              T=max(frames, DETECT_MIN_FRAMES), H=height, W=width)
    entries = []
    for idx, case in enumerate(cases):
        path = ep_dir / f"episode_{idx:03d}.h5"
        writer = gen_long if case in DETECT_CASES else gen
        expected = None
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
                expected = writer.write(Path(tmp), idx, case)
                os.chmod(tmp, 0o644)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            frames_ = writer.T
            active = ["left"] if case == "single_sided" else ["left", "right"]
        reason = CASES[case]
        if reason is not None:
            expected = None  # integrity quarantines it: nothing to detect
        entries.append({
            "path": path.relative_to(root).as_posix(),
            "episode": f"ep_{idx:03d}",
            "case": case,
            "note": _CASE_NOTES[case],
            "frames": frames_,
            "expected_integrity": {"ok": reason is None, "reason": reason},
            "active_sensors": active,
            "expected_detect": expected,
        })

    manifest = {
        "schema": MANIFEST_SCHEMA,
        "params": dict(task=task, date=date, episodes=episodes, frames=frames, seed=seed,
                       height=height, width=width, with_faults=with_faults,
                       detector_faults=detector_faults),
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

    def write(self, path: Path, idx: int, case: str) -> dict:
        """Write one episode; return its ``expected_detect`` ground truth."""
        rng = seeded_rng(self.seed, 7, idx)
        T, H, W = self.T, self.H, self.W
        start_s = 10 * 3600 + 120 * idx + int(rng.integers(0, 60))  # 10:00 + 2 min/episode
        t0 = self.day_epoch + start_s
        created = datetime.fromtimestamp(t0, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        ts = t0 + np.arange(T) / FPS + rng.normal(0.0, 4e-4, T)
        ts = np.maximum.accumulate(ts).astype(np.float64)
        s = np.linspace(0.0, 1.0, T, dtype=np.float32)  # episode phase per frame
        # Faults draw from their own stream: clean episodes stay as they always were.
        fault = _Faults(case, ts, seeded_rng(self.seed, 8, idx)) if case in DETECT_CASES else None
        if fault is not None:
            s = fault.camera_phase(s)

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
                if fault is not None:
                    color, depth = fault.camera(color), fault.stall(depth)
                g = f.create_group(f"realsense/cam{c}")
                g.create_dataset("color", data=color, chunks=(1, H, W, 3), **_blosc())
                g.create_dataset("depth", data=depth, chunks=(1, H, W), **_blosc())

            for side in ("left", "right"):
                if case == "missing_modality" and side == "left":
                    continue
                gs = self._gelsight(rng, side)
                if case == "frame_count_mismatch" and side == "right":
                    gs = gs[: T - _GS_MISMATCH_DROP]
                if fault is not None:
                    gs = fault.gelsight(gs, side)
                f.create_group(f"gelsight/{side}").create_dataset(
                    "frames", data=gs, chunks=(1, H, W, 3), **_blosc())

            ot_t = self._ot_times(rng, ts[0], ts[-1])
            firsts = {}
            for body in RIGID_BODIES:
                g = f.create_group(f"optitrack/{body}")
                if case == "single_sided" and body == "sensor_right":
                    t_b, pose = np.zeros(0), np.zeros((0, 7))
                else:
                    warp = fault.pose_time(ot_t) if fault is not None else ot_t
                    t_b, pose = ot_t, self._poses(rng, body, warp)
                    if fault is not None:
                        t_b, pose = fault.optitrack(body, t_b, pose)
                g.create_dataset("timestamps", data=t_b.astype(np.float64))
                g.create_dataset("pose", data=pose.astype(np.float64))
                if body != "motherboard" and len(t_b):
                    firsts[body.removeprefix("sensor_")] = float(t_b[0])

        # The trim rule of reference 1.2 on what was written.
        trim = int(np.searchsorted(ts, max(firsts.values()))) if firsts else 0
        expected = {"status": "detected", "trim_offset": trim, "intervals_h5": {},
                    "freeze_events": [], "drift_warning": []}
        if fault is not None:
            fault.expect(expected)
        return expected

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
        """Poses at (possibly time-warped, see ``_Faults.pose_time``) sample times ``t``."""
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



def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of [qx, qy, qz, qw] quaternions (broadcasting)."""
    ax, ay, az, aw = np.moveaxis(a, -1, 0)
    bx, by, bz, bw = np.moveaxis(b, -1, 0)
    return np.stack([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz], axis=-1)


class _Faults:
    """One detector fault: what it does to each stream and what detection must conclude.

    Faults sit at fixed fractions of the episode: ``k0 = T // 3`` and ``k1 = 2T // 3``.
    Frames get sensor noise (+-1 grey level) so that only a stall duplicates them.
    """

    STALL = 20      # ticks of the recorder stall
    HOLD = 30       # ticks the operator holds still
    TELEPORT = 5    # frames the marker swap lasts
    GAP_S = 1.0     # OT hole
    LATE_S = 1.0    # OT start delay

    def __init__(self, case: str, ts: np.ndarray, rng: np.random.Generator):
        self.case, self.ts, self.rng = case, ts, rng
        self.T = len(ts)
        self.k0, self.k1 = self.T // 3, (2 * self.T) // 3
        half = 0.5 / FPS
        # Hold window in time: covers camera ticks k0 .. k0+HOLD-1 exactly.
        self.hold_t = (ts[self.k0] - half, ts[self.k0 + self.HOLD] - half)

    # -------------------------------------------------------------- frames

    def camera_phase(self, s: np.ndarray) -> np.ndarray:
        """Operator still: the scene stops moving during the hold, then carries on."""
        if self.case != "operator_still":
            return s
        k = np.arange(self.T)
        warped = np.where(k < self.k0, k, np.maximum(self.k0, k - self.HOLD))
        return s[warped]

    def _noisy(self, frames: np.ndarray) -> np.ndarray:
        # +-1 grey level per pixel (cheap to draw): consecutive frames never match exactly,
        # and differ by ~0.9 on average, the noise floor the still thresholds allow for.
        out = frames.astype(np.int16)
        out += self.rng.integers(-1, 2, size=frames.shape, dtype=np.int8)
        np.clip(out, 0, 255, out=out)
        return out.astype(np.uint8)

    def stall(self, frames: np.ndarray) -> np.ndarray:
        """Recorder stall: the ticks repeat the frame before the stall."""
        if self.case == "recorder_stall":
            frames = frames.copy()
            frames[self.k0:self.k0 + self.STALL] = frames[self.k0 - 1]
        return frames

    def camera(self, color: np.ndarray) -> np.ndarray:
        return self.stall(self._noisy(color))

    def gelsight(self, gs: np.ndarray, side: str) -> np.ndarray:
        out = self._noisy(gs).astype(np.int16)
        if self.case == "led_spikes":
            if side == "left":
                out[self.k0:self.k0 + 2] += 45
            else:
                out[self.k1] += 50
        elif self.case == "gelsight_drift" and side == "left":
            # Frame 0 at the recorded level, the rest 20 grey levels darker and slowly
            # brightening back to -6: the quietest frames (p01) end up far from frame 0.
            offset = np.zeros(len(out), np.float32)
            offset[1:] = np.linspace(-20.0, -6.0, len(out) - 1)
            out = out + np.rint(offset).astype(np.int16)[:, None, None, None]
        return self.stall(np.clip(out, 0, 255).astype(np.uint8))

    # -------------------------------------------------------------- OptiTrack

    def pose_time(self, t: np.ndarray) -> np.ndarray:
        """Operator still: trajectory time stops during the hold (the hand does not move)."""
        if self.case != "operator_still":
            return t
        h0, h1 = self.hold_t
        return np.where(t < h0, t, np.where(t < h1, h0, t - (h1 - h0)))

    def optitrack(self, body: str, t: np.ndarray, pose: np.ndarray):
        ts, k0, k1 = self.ts, self.k0, self.k1
        pose = pose.copy()
        half = 0.5 / FPS
        if self.case == "late_ot_start":
            keep = t >= ts[0] + self.LATE_S
            return t[keep], pose[keep]
        if body == "motherboard":
            return t, pose
        side = body.removeprefix("sensor_")
        if self.case == "pose_teleport" and side == "left":
            m = (t >= ts[k0] - half) & (t < ts[k0 + self.TELEPORT] - half)
            pose[m, 0] += 0.3
            rot = np.array([np.sin(1.0), 0.0, 0.0, np.cos(1.0)])  # 2 rad about x
            pose[m, 3:] = _quat_mul(rot, pose[m, 3:])
        elif self.case == "pose_teleport" and side == "right":
            u = np.clip((t - ts[k1]) / 0.1, 0.0, 1.0)
            pose[:, 1] += 0.35 * u * u * u * (10 - 15 * u + 6 * u * u)  # min-jerk, 0.1 s
        elif self.case == "ot_freeze_gap" and side == "right":
            keep = ~((t > ts[k0]) & (t < ts[k0] + self.GAP_S))
            return t[keep], pose[keep]
        elif self.case == "recorder_stall":
            anchor = int(np.argmin(np.abs(t - ts[k0 - 1])))
            end = ts[k0 + self.STALL - 1] + half / 2
            pose[(t > t[anchor]) & (t <= end)] = pose[anchor]
        elif self.case == "operator_still":
            m = np.flatnonzero((t >= self.hold_t[0]) & (t < self.hold_t[1]))
            pose[m] = pose[m[0]]  # the solver reports the same solution: bit-identical
        return t, pose

    # -------------------------------------------------------------- ground truth

    def expect(self, e: dict) -> None:
        k0, k1 = self.k0, self.k1
        if self.case == "led_spikes":
            e["intervals_h5"] = {"intensity_spikes": [[k0, k0 + 1], [k1, k1]]}
        elif self.case == "pose_teleport":
            e["intervals_h5"] = {"pose_teleports_L": [[k0 - 1, k0 + self.TELEPORT]]}
            e["fast_translation_only"] = {"side": "right", "h5_frames": [k1, k1 + 3]}
        elif self.case == "ot_freeze_gap":
            frames = [k0, k0 + int(round(self.GAP_S * FPS))]
            e["intervals_h5"] = {"ot_loss_R": [frames]}
            e["freeze_events"] = [{"side": "right", "verdict": "ot_loss", "h5_frames": frames}]
        elif self.case == "recorder_stall":
            frames = [k0 - 1, k0 + self.STALL - 1]
            e["intervals_h5"] = {"ot_loss_L": [frames], "ot_loss_R": [frames]}
            e["freeze_events"] = [{"side": s, "verdict": "pipeline_stall", "h5_frames": frames}
                                  for s in ("left", "right")]
        elif self.case == "operator_still":
            frames = [k0, k0 + self.HOLD - 1]
            e["intervals_h5"] = {"ot_loss_L": [frames], "ot_loss_R": [frames]}
            e["freeze_events"] = [{"side": s, "verdict": "real_still", "h5_frames": frames}
                                  for s in ("left", "right")]
        elif self.case == "gelsight_drift":
            e["drift_warning"] = ["left"]
