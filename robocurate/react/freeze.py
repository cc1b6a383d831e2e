"""Freeze-event diagnosis: why did a pose stop changing? (reference 1.5.2, seed Stage 5C)

A freeze event is a run of bit-identical camera-aligned poses on an active sensor lasting
>= 0.25 s (8 frames), found like ``ot_loss`` (:func:`robocurate.react.detect.freeze_runs`)
but merged across gaps of up to one frame (``a - prev_b <= 2``). Each event gets evidence
from the other modalities, taken in a window of +-1 s (30 frames) around it:

- ``trans_vel_near_mps`` / ``ang_vel_near_rad_s``: the largest translational / angular
  speed in the RAW OptiTrack stream (real sample times, ``dt >= 1e-9``), over the sample
  pairs whose midpoint lies in the window: a solver flip on re-acquisition shows here;
- ``opt_gap_s``: the largest gap between OptiTrack samples in the window, the window's own
  edges included (the whole window when no sample falls inside): the solver lost the body;
- ``camN_motion`` / ``view_motion`` (cam2) / ``tac_motion`` and ``camN_dup`` / ``tac_dup``:
  over <= 32 frame pairs ``(i, i+1)`` spread evenly over the event
  (``linspace(a, b-1, 32)``), the mean absolute difference (int16) and the fraction of pairs
  that are exactly equal. Only these frames are read from the ``.h5``, never whole videos.

Verdict, first match wins:

1. ``pipeline_stall``: all three RealSense streams duplicate >= 30 % of the sampled pairs
   (the recorder itself stalled; GelSight is deliberately left out);
2. ``ot_loss``: OT gap >= 0.10 s, or translational speed >= 5 m/s, or angular speed
   >= 15 rad/s near the event;
3. ``real_still``: cam2 < 2, GelSight < 3, cam0 < 2 and cam1 < 2 (motion at noise floor:
   the operator held still);
4. otherwise ``ot_loss``: a bit-frozen pose with no contradicting evidence.

``ambiguous`` is kept as a class (counted, accepted as a manual label) but never returned.

Pure library: no Prefect.
"""

from __future__ import annotations

import os
import zlib
from concurrent.futures import Executor, ThreadPoolExecutor

import hdf5plugin  # noqa: F401  registers BLOSC: frames of files not yet recompressed
import numpy as np

from robocurate.react.detect import freeze_runs, merge_intervals
from robocurate.react.layout import FPS

__all__ = [
    "EVENT_FIELDS",
    "NEAR_WINDOW_S",
    "N_DUP_SAMPLES",
    "TAU_ANG_RAD_S",
    "TAU_DUP_FRAC",
    "TAU_OPT_GAP_S",
    "TAU_TAC_STILL",
    "TAU_TRANS_MPS",
    "TAU_VIEW_STILL",
    "THRESHOLD_S",
    "THRESHOLDS",
    "VERDICTS",
    "count_verdicts",
    "diagnose_episode",
    "event_id",
    "freeze_events",
    "motion_stat",
    "near_speeds",
    "opt_gap",
    "ot_pair_speeds",
    "read_frames",
    "sample_pairs",
    "verdict_for",
]

THRESHOLD_S = 0.25
NEAR_WINDOW_S = 1.0
TAU_TRANS_MPS = 5.0
TAU_ANG_RAD_S = 15.0
TAU_OPT_GAP_S = 0.10
TAU_DUP_FRAC = 0.30
TAU_VIEW_STILL = 2.0
TAU_TAC_STILL = 3.0
N_DUP_SAMPLES = 32
VERDICTS = ("ot_loss", "pipeline_stall", "real_still", "ambiguous")
THRESHOLDS = {"trans_mps": TAU_TRANS_MPS, "ang_rad_s": TAU_ANG_RAD_S,
              "opt_gap_s": TAU_OPT_GAP_S, "dup_frac": TAU_DUP_FRAC,
              "view_still": TAU_VIEW_STILL, "tac_still": TAU_TAC_STILL}

# Field order of one event (1.7.4), after the stable ``id``.
EVENT_FIELDS = ("id", "episode", "side", "a", "b", "_h5_a", "_h5_b", "length_s",
                "view_motion", "cam0_motion", "cam1_motion", "tac_motion",
                "cam0_dup", "cam1_dup", "cam2_dup", "tac_dup",
                "trans_vel_near_mps", "ang_vel_near_rad_s", "opt_gap_s", "verdict")


def freeze_events(pose, *, fps: float = FPS, threshold_s: float = THRESHOLD_S) -> list[list[int]]:
    """Freeze runs of a (T, 7) camera-aligned pose, merged across <= 1-frame gaps."""
    return merge_intervals(freeze_runs(pose, fps=fps, threshold_s=threshold_s), max_gap=1)


def event_id(episode: str, side: str, a: int, b: int) -> str:
    """Stable identity of an event: what a manual verdict is attached to across re-runs."""
    return f"{episode}:{side}:{int(a)}-{int(b)}"


# =========================================================================== OT evidence


def ot_pair_speeds(ts, pose) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per consecutive raw-sample pair: (midpoint time, m/s, rad/s) with the real dt."""
    ts = np.asarray(ts, dtype=np.float64)
    p = np.asarray(pose, dtype=np.float64)
    if len(ts) < 2:
        empty = np.zeros(0)
        return empty, empty, empty
    dt = np.maximum(np.diff(ts), 1e-9)
    trans = np.linalg.norm(np.diff(p[:, :3], axis=0), axis=1) / dt
    q = p[:, 3:7] / np.maximum(np.linalg.norm(p[:, 3:7], axis=1, keepdims=True), 1e-12)
    dot = np.abs(np.einsum("ij,ij->i", q[:-1], q[1:]))
    ang = 2.0 * np.arccos(np.clip(dot, -1.0, 1.0)) / dt
    return (ts[:-1] + ts[1:]) / 2.0, trans, ang


def near_speeds(mid, trans, ang, t0: float, t1: float) -> tuple[float, float]:
    """Largest translational and angular speed over pairs with midpoint in [t0, t1]."""
    lo, hi = np.searchsorted(mid, t0, "left"), np.searchsorted(mid, t1, "right")
    if hi <= lo:
        return 0.0, 0.0
    return float(np.max(trans[lo:hi])), float(np.max(ang[lo:hi]))


def opt_gap(ts, t0: float, t1: float) -> float:
    """Largest gap between OT samples in [t0, t1], counting the gaps to the window edges."""
    ts = np.asarray(ts, dtype=np.float64)
    lo, hi = np.searchsorted(ts, t0, "left"), np.searchsorted(ts, t1, "right")
    if hi <= lo:
        return float(t1 - t0)
    pts = np.concatenate(([t0], ts[lo:hi], [t1]))
    return float(np.max(np.diff(pts)))


# =========================================================================== frame evidence


def sample_pairs(a: int, b: int, n: int = N_DUP_SAMPLES) -> np.ndarray:
    """First frames of <= n pairs ``(i, i+1)`` spread evenly over ``[a, b]``."""
    return np.linspace(a, max(a, b - 1), n).astype(np.int64)


def motion_stat(ds, pairs: np.ndarray, pool: Executor | None = None) -> tuple[float, float]:
    """(mean over pairs of mean |x1 - x0|, fraction of exactly equal pairs) for a frame stream.

    Reads only the frames the pairs touch, one chunk each (see :func:`read_frames`).
    """
    if len(pairs) == 0:
        return 0.0, 0.0
    needed = [int(k) for k in np.unique(np.concatenate((pairs, pairs + 1)))]
    frames = read_frames(ds, needed, pool)
    motions, dups = [], []
    for i in pairs:
        x0, x1 = frames[int(i)], frames[int(i) + 1]
        same = bool(np.array_equal(x0, x1))
        dups.append(same)
        motions.append(0.0 if same else
                       float(np.mean(np.abs(x1.astype(np.int16) - x0.astype(np.int16)))))
    return float(np.mean(motions)), float(np.mean(dups))


def read_frames(ds, indices: list[int], pool: Executor | None = None) -> dict[int, np.ndarray]:
    """Frames ``ds[k]`` for ``k`` in ``indices``.

    For a GZIP(+shuffle) dataset chunked one frame per chunk (the layout after the compress
    stage) the raw chunks are read directly and inflated on ``pool``'s threads: zlib
    releases the GIL, h5py does not, so this decodes on every core. Anything else (BLOSC
    before compression, other filters or chunking, a chunk stored unfiltered or never
    written) goes through h5py, one frame at a time.
    """
    if pool is None or not _plain_gzip_frames(ds):
        return {k: ds[k] for k in indices}
    raw: dict[int, bytes] = {}
    out: dict[int, np.ndarray] = {}
    zeros = (0,) * (ds.ndim - 1)
    for k in indices:
        try:
            mask, buf = ds.id.read_direct_chunk((k, *zeros))
        except (OSError, KeyError, ValueError, RuntimeError):
            mask, buf = 1, None  # e.g. a chunk never written: h5py returns the fill value
        if mask == 0:
            raw[k] = buf
        else:
            out[k] = ds[k]
    shape, dtype, shuffle = ds.shape[1:], ds.dtype, bool(ds.shuffle)

    def decode(buf: bytes) -> np.ndarray:
        data = zlib.decompress(buf)
        if shuffle and dtype.itemsize > 1:  # undo HDF5's byte shuffle
            data = np.frombuffer(data, np.uint8).reshape(dtype.itemsize, -1).T.tobytes()
        return np.frombuffer(data, dtype=dtype).reshape(shape)

    keys = list(raw)
    for k, frame in zip(keys, pool.map(decode, (raw[k] for k in keys))):
        out[k] = frame
    return out


def _plain_gzip_frames(ds) -> bool:
    import h5py

    chunks = ds.chunks
    if (chunks is None or ds.ndim < 2 or chunks[0] != 1 or tuple(chunks[1:]) != ds.shape[1:]
            or ds.compression != "gzip"):
        return False
    dcpl = ds.id.get_create_plist()
    filters = {dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())}
    return filters <= {h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_SHUFFLE}


def verdict_for(ev: dict) -> str:
    """The class of one event from its evidence (first match wins; see the module doc)."""
    if min(ev["cam0_dup"], ev["cam1_dup"], ev["cam2_dup"]) >= TAU_DUP_FRAC:
        return "pipeline_stall"
    if (ev["opt_gap_s"] >= TAU_OPT_GAP_S or ev["trans_vel_near_mps"] >= TAU_TRANS_MPS
            or ev["ang_vel_near_rad_s"] >= TAU_ANG_RAD_S):
        return "ot_loss"
    if (ev["view_motion"] < TAU_VIEW_STILL and ev["tac_motion"] < TAU_TAC_STILL
            and ev["cam0_motion"] < TAU_VIEW_STILL and ev["cam1_motion"] < TAU_VIEW_STILL):
        return "real_still"
    return "ot_loss"


# =========================================================================== one episode


def diagnose_episode(h5, poses: dict, ot: dict, *, trim: int, episode: str,
                     fps: float = FPS) -> list[dict]:
    """Every freeze event of the given sides, with its evidence and verdict.

    ``h5``: the open raw file; ``poses``: side -> trimmed (T, 7) camera-aligned pose (the
    ``.pt``'s ``sensor_<side>_pose``); ``ot``: side -> (raw OT timestamps, raw (N, 7) poses);
    ``trim``: the ``.pt``'s ``trim_offset``. ``a``/``b`` are trimmed-pt frames, ``_h5_a`` /
    ``_h5_b`` raw-file frames. Sorted by (a, side).
    """
    cam_ts = np.asarray(h5["timestamps"][:], dtype=np.float64)
    near = int(round(NEAR_WINDOW_S * fps))
    # Both sides often freeze over the same frames (a stall): the camera evidence of a
    # window is computed once.
    memo: dict[tuple, tuple[float, float]] = {}
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        events = _diagnose(h5, poses, ot, trim, episode, fps, cam_ts, near, memo, pool)
    events.sort(key=lambda e: (e["a"], e["side"]))
    return events


def _diagnose(h5, poses, ot, trim, episode, fps, cam_ts, near, memo, pool) -> list[dict]:
    events = []
    for side, pose in poses.items():
        found = freeze_events(np.asarray(pose), fps=fps)
        if not found:
            continue
        ts, raw = ot[side]
        mid, trans, ang = ot_pair_speeds(ts, raw)
        for a, b in found:
            ha, hb = a + trim, b + trim
            t0 = cam_ts[max(0, ha - near)]
            t1 = cam_ts[min(len(cam_ts) - 1, hb + near)]
            v, w = near_speeds(mid, trans, ang, t0, t1)
            pairs = sample_pairs(ha, hb)
            stats = {}
            for name, path in (("cam0", "realsense/cam0/color"), ("cam1", "realsense/cam1/color"),
                               ("view", "realsense/cam2/color"), ("tac", f"gelsight/{side}/frames")):
                if (path, ha, hb) not in memo:
                    memo[(path, ha, hb)] = motion_stat(h5[path], pairs, pool)
                stats[name] = memo[(path, ha, hb)]
            ev = {
                "id": event_id(episode, side, a, b),
                "episode": episode,
                "side": side,
                "a": int(a),
                "b": int(b),
                "_h5_a": int(ha),
                "_h5_b": int(hb),
                "length_s": round((b - a + 1) / fps, 3),
                "view_motion": stats["view"][0],
                "cam0_motion": stats["cam0"][0],
                "cam1_motion": stats["cam1"][0],
                "tac_motion": stats["tac"][0],
                "cam0_dup": stats["cam0"][1],
                "cam1_dup": stats["cam1"][1],
                "cam2_dup": stats["view"][1],
                "tac_dup": stats["tac"][1],
                "trans_vel_near_mps": v,
                "ang_vel_near_rad_s": w,
                "opt_gap_s": opt_gap(ts, t0, t1),
            }
            ev["verdict"] = verdict_for(ev)  # decided on the unrounded evidence
            events.append(_rounded(ev))
    return events


def count_verdicts(events) -> dict[str, int]:
    """``{ot_loss, pipeline_stall, real_still, ambiguous}`` -> number of events."""
    counts = {v: 0 for v in VERDICTS}
    for ev in events:
        counts[ev["verdict"]] = counts.get(ev["verdict"], 0) + 1
    return counts


def _rounded(ev: dict) -> dict:
    digits = {"view_motion": 3, "cam0_motion": 3, "cam1_motion": 3, "tac_motion": 3,
              "cam0_dup": 4, "cam1_dup": 4, "cam2_dup": 4, "tac_dup": 4,
              "trans_vel_near_mps": 3, "ang_vel_near_rad_s": 3, "opt_gap_s": 4}
    return {k: (round(float(ev[k]), digits[k]) if k in digits else ev[k]) for k in EVENT_FIELDS}
