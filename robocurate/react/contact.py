"""Contact indexing: one raw React episode (``episode_NNN.h5``) -> one ``episode_NNN.pt``.

Reference ``react-tactile-and-owa.md`` 1.1 (raw layout), 1.2 (``.pt`` schema, thumbnail
recipe, pose alignment, ``_contact_meta``, trim rule) and 1.3 (contact metrics, p01
reference, drift). The ``.pt`` holds the mode1_v1 key ``view`` (cam0) and the multi-camera
keys of the later schema:

==============================  ============  =======  ===================================
key                             shape         dtype    content
==============================  ============  =======  ===================================
view                            (T,3,128,128) uint8    cam0 (right) thumbnail, BGR; the
                                                       same tensor as ``view_right``
view_left/middle/right          (T,3,128,128) uint8    cam1 / cam2 / cam0, BGR as stored
tactile_left/right              (T,3,128,128) uint8    GelSight, RGB as stored
sensor_left/right_pose          (T,7)         float32  nearest OT pose per camera tick
                                                       (``layout.cam_aligned_pose``);
                                                       zeros for an inactive side
timestamps                      (T,)          float64  camera tick time, trimmed
tactile_{side}_{intensity,      (T,)          float32  contact scalars against the p01
area,mixed}                                            reference (1.3)
_contact_meta                   dict                   see ``index_episode``
==============================  ============  =======  ===================================

Metrics are computed on the 128x128 thumbnails (the ``.pt`` generation, whose thresholds
were validated on these values; 1.3 says to keep one resolution): per pixel
``d = ||frame - ref||_2`` over RGB in float32, ``intensity = mean(d)``,
``area = mean(d > tau)``, ``mixed = mean(d * [d > tau])``, ``tau = 8``.

Frame coordinates. ``trim_offset``, ``pre_trim_n_frames`` and ``ref_p01_idx_{side}`` are
in **H5 camera-frame coordinates** like ``build_episodes_from_h5`` (``ref_p01_idx`` =
index in the ``.pt`` + ``trim_offset``). With ``gelsight_lag`` N the GelSight row that
holds a camera frame's tactile image is that index + N (``gelsight_lag_frames``).

Streaming. Each stream is cut into slices of ``chunk_frames`` frames along axis 0,
aligned to the dataset's chunking, and each slice is one pool task that reads it a few
frames (whole chunks) at a time into two recycled buffers, thumbnails them while they are
in cache (``thumbs``: a compiled kernel) and, for tactile slices, computes the first-pass
intensity against ``ref_first`` in torch. Reading goes through ``io.h5rows``: chunks are
read at the file offsets HDF5 reports and decoded on the task's thread (c-blosc, zlib),
so decoding runs on every core instead of queueing behind h5py's one lock, and every
step releases the GIL. Only thumbnails are kept (49 kB per stream and frame); above
``spill_bytes`` they live in memory-mapped scratch files next to the output, so resident
memory is bounded by a few full-resolution frames per worker (a few chunks, where chunks
hold many frames) whatever the episode length. The second pass (metrics against the p01
reference) runs over the tactile thumbnails in batches on ``device``.

Pure library: no Prefect.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the BLOSC filter the recorder writes with)
import numpy as np
import torch

from robocurate.findings import Findings
from robocurate.io.atomic import atomic_open
from robocurate.io.h5rows import RowReader
from robocurate.react.layout import SIDES, cam_aligned_pose
from robocurate.react.thumbs import THUMB, thumbnail, thumbnails_into

__all__ = [
    "CAMERA_KEYS",
    "DRIFT_WARNING",
    "FORMULA_VERSION",
    "P01_SMOOTH_WIN",
    "RULE_IDS",
    "TAU",
    "TRIM_REASON_NONE",
    "TRIM_REASON_OT",
    "contact_scalars",
    "index_episode",
    "mean_l2",
    "pick_p01_reference",
    "resolve_device",
    "trim_offset_for",
]

FORMULA_VERSION = "v1"
TAU = 8.0
RGB_NORM = "L2"
REFERENCE_STRATEGY = "p01"
P01_SMOOTH_WIN = 30
DRIFT_WARNING = 5.0
TRIM_REASON_OT = "OT not yet streaming at recording start"
TRIM_REASON_NONE = "no trim required"

# .pt key -> RealSense camera index (display order left | middle | right = cam1, cam2, cam0).
CAMERA_KEYS = {"view_left": 1, "view_middle": 2, "view_right": 0}
_STREAMS = {**{k: f"realsense/cam{c}/color" for k, c in CAMERA_KEYS.items()},
            **{f"tactile_{s}": f"gelsight/{s}/frames" for s in SIDES}}

RULE_IDS = (
    "unreadable_file",        # HDF5 cannot open the file or its structure
    "missing_modality",       # a required dataset is absent
    "malformed_dataset",      # wrong rank / dtype / channel count / OT pose width
    "frame_count_mismatch",   # a camera (or a longer GelSight) disagrees with timestamps
    "gelsight_short",         # a GelSight stream has fewer frames than the cameras
    "empty_episode",          # zero frames
    "bad_timestamps",         # non-finite camera or OptiTrack timestamps
    "no_optitrack",           # every sensor OT stream empty, or an active side has none
    "nan_pose",               # non-finite OT pose values on an active side
    "zero_norm_quaternion",   # OT quaternion of (near) zero norm on an active side
    "lag_too_large",          # gelsight_lag leaves no frame
    "no_frames_after_trim",   # OT starts after the last camera frame
    "read_error",             # HDF5 failed while streaming frames (corrupt chunk)
    "single_sided_recording",  # info: a side is inactive, zero poses
    "unsorted_timestamps",    # warning: timestamps not monotonic (OT re-sorted)
)

_QUAT_EPS = 1e-6
_DEFAULT_SPILL_BYTES = 512 << 20


# =========================================================================== metrics


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when torch sees one, else CPU; ``cuda`` without one -> ValueError."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no CUDA device")
    return dev


def _l2(frames: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-pixel L2 distance over channels, float32: (B,C,H,W) x (C,H,W) -> (B,H,W).

    Accumulated channel by channel with in-place ops: a third of the temporaries of
    ``(frames - ref).square().sum(1)`` and the same value bit for bit (uint8 inputs: every
    difference, square and sum is an integer below 2**24, exact in float32).
    """
    rf = ref.to(torch.float32)
    acc = None
    for c in range(frames.shape[1]):
        t = frames[:, c].to(torch.float32).sub_(rf[c]).square_()
        acc = t if acc is None else acc.add_(t)
    return acc.sqrt_()


def mean_l2(frames: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``intensity`` only: mean per-pixel L2 distance of each frame to ``ref``, (B,)."""
    return _l2(frames, ref).mean(dim=(1, 2))


def contact_scalars(frames: torch.Tensor, ref: torch.Tensor, tau: float = TAU
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(intensity, area, mixed)``, each (B,) float32, of uint8 (B,3,H,W) frames vs ref."""
    d = _l2(frames, ref)
    intensity = d.mean(dim=(1, 2))
    above = d > tau
    area = above.to(torch.float32).mean(dim=(1, 2))
    mixed = d.mul_(above).mean(dim=(1, 2))  # d is not needed any more: in place
    return intensity, area, mixed


def _batch_for(dev: torch.device) -> int:
    # CPU: 16 thumbnails keep the float32 temporaries (1 MB each) in cache; GPU: big batches.
    return 16 if dev.type == "cpu" else 1024


def pick_p01_reference(i_first: np.ndarray, window: int = P01_SMOOTH_WIN) -> int:
    """Index of the quietest frame: argmin of ``i_first`` smoothed by a uniform window
    of ``min(window, T)`` (``np.convolve(..., mode="same")``, first minimum wins).

    As in the reference recipe, "same" pads with zeros, so the first and last ~w/2
    frames are smoothed towards 0 and favoured; kept as is for comparable references.
    """
    x = np.asarray(i_first, dtype=np.float64)
    if x.size == 0:
        raise ValueError("empty intensity series")
    w = min(window, x.size)
    smoothed = np.convolve(x, np.ones(w) / w, mode="same")
    return int(np.argmin(smoothed))


def trim_offset_for(cam_ts: np.ndarray, first_ot_ts: list[float]) -> int:
    """First camera frame at which every active sensor has an OT sample at or before it.

    ``searchsorted(cam_ts, max(first OT ts))`` (left side), written as "first index with
    ``cam_ts >= v``" so that it is also defined for a non-monotonic clock. Returns
    ``len(cam_ts)`` when OT starts after the last frame; 0 without active sensors.
    """
    if not first_ot_ts:
        return 0
    hits = np.flatnonzero(np.asarray(cam_ts) >= max(first_ot_ts))
    return int(hits[0]) if hits.size else len(cam_ts)


# =========================================================================== inspection


@dataclass
class _Plan:
    """What to read and how to align it, decided from metadata before any frame is read."""

    n_frames: int                 # T in the H5 (len(timestamps))
    lag: int
    trim: int
    kept: int
    active: list[str]
    cam_ts: np.ndarray            # trimmed camera timestamps (kept,)
    ot: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def first_row(self, key: str) -> int:
        """H5 row of the stream that goes with kept frame 0."""
        return self.trim + (self.lag if key.startswith("tactile_") else 0)


class _Bad(Exception):
    """A data problem already recorded as a finding: stop this episode."""


def _dataset(f: h5py.File, name: str):
    obj = f.get(name)
    return obj if isinstance(obj, h5py.Dataset) else None


def _inspect(f: h5py.File, path: str, findings: Findings, lag: int,
             active_sensors: list[str] | None) -> _Plan:
    required = ["timestamps", *_STREAMS.values()]
    missing = [n for n in required if _dataset(f, n) is None]
    if missing:
        findings.add(path, "missing_modality", "missing required dataset(s): "
                     + ", ".join(missing))
        raise _Bad

    ts_ds = f["timestamps"]
    if ts_ds.ndim != 1:
        findings.add(path, "malformed_dataset",
                     f"timestamps has shape {ts_ds.shape}, expected (T,)")
        raise _Bad
    n = int(ts_ds.shape[0])
    bad = []
    for key, name in _STREAMS.items():
        ds = f[name]
        if ds.ndim != 4 or ds.shape[-1] != 3 or ds.dtype != np.uint8 or min(ds.shape[1:3]) < 1:
            bad.append(f"{name} {ds.shape} {ds.dtype} (expected (T,H,W,3) uint8)")
    if bad:
        findings.add(path, "malformed_dataset", "; ".join(bad))
        raise _Bad
    counts = {name: int(f[name].shape[0]) for name in _STREAMS.values()}
    cams = {k: v for k, v in counts.items() if k.startswith("realsense/") and v != n}
    gs_long = {k: v for k, v in counts.items() if k.startswith("gelsight/") and v > n}
    gs_short = {k: v for k, v in counts.items() if k.startswith("gelsight/") and v < n}
    if cams or gs_long:
        findings.add(path, "frame_count_mismatch",
                     f"per-frame datasets disagree with timestamps ({n} frames): "
                     + ", ".join(f"{k}={v}" for k, v in {**cams, **gs_long}.items()))
    if gs_short:
        findings.add(path, "gelsight_short",
                     f"GelSight stream shorter than the cameras ({n} frames): "
                     + ", ".join(f"{k}={v}" for k, v in gs_short.items()))
    if cams or gs_long or gs_short:
        raise _Bad
    if n == 0:
        findings.add(path, "empty_episode", "the episode has no frames")
        raise _Bad
    if lag >= n:
        findings.add(path, "lag_too_large",
                     f"gelsight_lag={lag} frames leaves nothing of a {n}-frame episode")
        raise _Bad

    cam_ts = np.asarray(ts_ds[()], dtype=np.float64)
    if not np.isfinite(cam_ts).all():
        findings.add(path, "bad_timestamps", f"{int((~np.isfinite(cam_ts)).sum())} "
                     "non-finite camera timestamp(s)")
        raise _Bad
    if cam_ts.size > 1 and (np.diff(cam_ts) < 0).any():
        findings.add(path, "unsorted_timestamps", "camera timestamps go backwards "
                     f"{int((np.diff(cam_ts) < 0).sum())} time(s)", severity="warning")

    streams = {side: _read_ot(f, path, side, findings) for side in SIDES}
    with_data = [s for s in SIDES if len(streams[s][0]) > 0]
    if active_sensors is None:
        active = with_data
        if not active:
            findings.add(path, "no_optitrack",
                         "every OptiTrack sensor stream is empty (optitrack/sensor_left, "
                         "optitrack/sensor_right): no side can be aligned or trimmed")
            raise _Bad
    else:
        active = [s for s in SIDES if s in active_sensors]
        empty = [s for s in active if s not in with_data]
        if not active or empty:
            findings.add(path, "no_optitrack",
                         "declared active sensor(s) without OptiTrack samples: "
                         + (", ".join(f"optitrack/sensor_{s}" for s in empty) or "none declared"))
            raise _Bad
    for side in SIDES:
        if side not in active:
            why = ("its OptiTrack stream is empty" if side not in with_data
                   else "it is not in active_sensors")
            findings.add(path, "single_sided_recording",
                         f"single-sided recording: {side} side inactive ({why}); "
                         "its poses are zeros", item=side, severity="info")
    for side in active:
        _check_poses(path, side, streams[side], findings)
    if any(fd.severity == "error" for fd in findings):
        raise _Bad

    usable = n - lag  # the last `lag` camera frames have no GelSight frame
    trim = trim_offset_for(cam_ts[:usable], [float(streams[s][0][0]) for s in active])
    if trim >= usable:
        findings.add(path, "no_frames_after_trim",
                     f"OptiTrack starts after the last usable camera frame (trim would be "
                     f"{trim} of {usable} frames)")
        raise _Bad
    return _Plan(n_frames=n, lag=lag, trim=trim, kept=usable - trim, active=active,
                 cam_ts=cam_ts[trim:usable].copy(), ot={s: streams[s] for s in active})


def _read_ot(f: h5py.File, path: str, side: str, findings: Findings
             ) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps, pose) of one sensor body, sorted by time; empty when absent."""
    group = f"optitrack/sensor_{side}"
    ts_ds, pose_ds = _dataset(f, f"{group}/timestamps"), _dataset(f, f"{group}/pose")
    if ts_ds is None and pose_ds is None:
        return np.zeros(0), np.zeros((0, 7))
    if ts_ds is None or pose_ds is None:
        findings.add(path, "malformed_dataset", f"{group} has only one of timestamps/pose",
                     item=side)
        return np.zeros(0), np.zeros((0, 7))
    ts = np.asarray(ts_ds[()], dtype=np.float64).reshape(-1)
    pose = np.asarray(pose_ds[()], dtype=np.float64)
    if pose.ndim != 2 or pose.shape[1] != 7 or len(pose) != len(ts):
        findings.add(path, "malformed_dataset",
                     f"{group}: pose {pose.shape} vs timestamps {ts.shape} "
                     "(expected (N,7) and (N,))", item=side)
        return np.zeros(0), np.zeros((0, 7))
    if not np.isfinite(ts).all():
        findings.add(path, "bad_timestamps",
                     f"{group}/timestamps: {int((~np.isfinite(ts)).sum())} non-finite value(s)",
                     item=side)
        return ts, pose
    if ts.size > 1 and (np.diff(ts) < 0).any():
        findings.add(path, "unsorted_timestamps",
                     f"{group}/timestamps not monotonic; samples re-sorted by time",
                     item=side, severity="warning")
        order = np.argsort(ts, kind="stable")
        ts, pose = ts[order], pose[order]
    return ts, pose


def _check_poses(path: str, side: str, stream: tuple[np.ndarray, np.ndarray],
                 findings: Findings) -> None:
    group = f"optitrack/sensor_{side}/pose"
    pose = stream[1]
    finite = np.isfinite(pose).all(axis=1)
    if not finite.all():
        first = int(np.flatnonzero(~finite)[0])
        findings.add(path, "nan_pose", f"{group}: {int((~finite).sum())} of {len(pose)} "
                     f"samples have non-finite values (first at sample {first})", item=side)
    norms = np.linalg.norm(pose[finite, 3:7], axis=1)
    if (norms < _QUAT_EPS).any():
        idx = np.flatnonzero(finite)[norms < _QUAT_EPS]
        findings.add(path, "zero_norm_quaternion", f"{group}: {len(idx)} sample(s) with a "
                     f"zero-norm quaternion (first at sample {int(idx[0])})", item=side)


# =========================================================================== streaming


def _step(chunk_rows: int, frames: int) -> int:
    """About ``frames`` rows, a whole number (at least one) of HDF5 chunks."""
    return max(1, frames // chunk_rows) * chunk_rows


def _aligned_ranges(r0: int, r1: int, chunk_rows: int, chunk_frames: int) -> list[tuple]:
    """Split rows [r0, r1) at multiples of ``_step``, so every chunk is decompressed
    exactly once."""
    step = _step(chunk_rows, chunk_frames)
    cuts = list(range((r0 // step + 1) * step, r1, step))
    edges = [r0, *cuts, r1]
    return list(zip(edges[:-1], edges[1:]))


_FRAMES_IN_CACHE = 4  # frames read and thumbnailed together (4 x 0.9 MB at 480x640)


class _Buffers:
    """Recycled frame buffers, one free list per (shape, dtype): fresh arrays cost a page
    fault per 4 kB, and a task's buffers are reused while still in the CPU's cache."""

    def __init__(self) -> None:
        self.free: dict[tuple, list[np.ndarray]] = {}
        self.lock = threading.Lock()

    def get(self, shape: tuple, dtype) -> np.ndarray:
        with self.lock:
            free = self.free.get((shape, np.dtype(dtype).str))
            if free:
                return free.pop()
        return np.empty(shape, dtype=dtype)

    def put(self, buf: np.ndarray) -> None:
        with self.lock:
            self.free.setdefault((buf.shape, buf.dtype.str), []).append(buf)


class _ReadFailed(Exception):
    def __init__(self, job, exc):
        super().__init__(f"{job}: {exc}")
        self.job, self.exc = job, exc


class _Scratch:
    """Thumbnail arrays: in RAM, or memory-mapped scratch files when they would be big."""

    def __init__(self, stack: ExitStack, out_dir: Path, total_bytes: int, spill_bytes: int):
        self.dir = None
        if total_bytes > spill_bytes:
            self.dir = Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix=".contact-scratch-", dir=out_dir)))

    def array(self, name: str, shape: tuple, dtype=np.uint8) -> np.ndarray:
        if self.dir is None:
            return np.empty(shape, dtype=dtype)
        return np.lib.format.open_memmap(self.dir / f"{name}.npy", mode="w+", dtype=dtype,
                                         shape=shape)


def _default_workers() -> int:
    # As many threads as cores (at most 8): each reads, decodes and thumbnails its own
    # slices, and every part of that releases the GIL.
    return max(1, min(8, os.cpu_count() or 1))


# =========================================================================== public API


def index_episode(h5_path: str | os.PathLike, out_path: str | os.PathLike, *,
                  device: str = "auto", gelsight_lag: int = 0,
                  active_sensors: list[str] | tuple[str, ...] | None = None,
                  chunk_frames: int = 64, workers: int | None = None,
                  spill_bytes: int = _DEFAULT_SPILL_BYTES) -> dict:
    """Contact-index one raw episode into ``out_path`` (written atomically, or not at all).

    - ``device``: ``auto`` (CUDA if available), ``cpu`` or ``cuda[:n]`` for the metrics;
      thumbnails are always made on the CPU (``thumbs``: the cv2 recipe, bit-exact).
    - ``gelsight_lag`` N >= 0: GelSight lags the cameras by N frames in early recordings
      (reference 1.1, "Important legacy defect"): GelSight row t+N goes with camera
      frame t. The last N camera frames then have no tactile frame and are dropped, so
      ``kept = pre_trim_n_frames - trim_offset - gelsight_lag_frames``; ``ref_first`` is
      GelSight row N (the tactile frame of camera frame 0).
    - ``active_sensors``: default = sides with a non-empty OptiTrack stream. An inactive
      side gets zero poses (its tactile frames and metrics are still written) and an
      info finding ``single_sided_recording``. A declared side without OT data fails.
    - ``chunk_frames``: frames per task (rounded to whole HDF5 chunks).
    - ``workers``: threads reading, decoding and thumbnailing slices (default: the CPU
      count, at most 8).

    ``_contact_meta``: ``formula_version`` "v1", ``tau`` 8.0, ``rgb_norm`` "L2",
    ``reference_strategy`` "p01", ``ref_first_{side}`` / ``ref_p01_{side}`` uint8
    (3,128,128), ``ref_p01_idx_{side}`` int in H5 camera-frame coordinates (``.pt`` index +
    ``trim_offset``), ``drift_{side}`` float, ``drift_warning`` bool (max drift > 5.0),
    ``trim_offset`` int, ``trim_reason``, ``pre_trim_n_frames`` (= T in the H5),
    ``active_sensors`` list of str, ``gelsight_lag_frames`` int.

    Returns a JSON-serialisable manifest ``{path, pt, status ("indexed"|"failed"), frames,
    kept, trim_offset, active_sensors, drift_left, drift_right, drift_warning, device,
    seconds, findings}``. Data problems never raise: they are findings with status
    "failed" and no ``.pt`` is written (``pt`` is None). Bad arguments raise ValueError.
    """
    t_start = time.perf_counter()
    if not isinstance(gelsight_lag, (int, np.integer)) or gelsight_lag < 0:
        raise ValueError(f"gelsight_lag must be an int >= 0, got {gelsight_lag!r}")
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    if active_sensors is not None:
        unknown = set(active_sensors) - set(SIDES)
        if unknown:
            raise ValueError(f"unknown sensor side(s) {sorted(unknown)}; use {SIDES}")
    dev = resolve_device(device)
    workers = _default_workers() if workers is None else max(1, int(workers))
    h5_path, out_path = Path(h5_path), Path(out_path)
    path = str(h5_path)
    findings = Findings()
    manifest = {"path": path, "pt": None, "status": "failed", "frames": None, "kept": 0,
                "trim_offset": None, "active_sensors": [], "drift_left": None,
                "drift_right": None, "drift_warning": None, "device": str(dev),
                "seconds": 0.0, "findings": []}

    def finish() -> dict:
        manifest["seconds"] = round(time.perf_counter() - t_start, 4)
        manifest["findings"] = findings.to_list()
        return manifest

    try:
        f = h5py.File(h5_path, "r")
    except OSError as exc:  # FileNotFoundError included
        findings.add(path, "unreadable_file", f"cannot open as HDF5: {exc}")
        return finish()
    with f:
        try:
            plan = _inspect(f, path, findings, int(gelsight_lag),
                            None if active_sensors is None else list(active_sensors))
        except _Bad:
            return finish()
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
            findings.add(path, "unreadable_file", f"cannot read HDF5 structure: {exc}")
            return finish()
        manifest.update(frames=plan.n_frames, trim_offset=plan.trim,
                        active_sensors=list(plan.active))
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            if dev.type == "cpu":
                # Small batched ops on thumbnails: one intra-op thread is fastest, and the
                # other cores are busy reading, decoding and thumbnailing.
                stack.callback(torch.set_num_threads, torch.get_num_threads())
                torch.set_num_threads(1)
            try:
                episode = _build(f, plan, dev, chunk_frames, workers, stack,
                                 _Scratch(stack, out_path.parent,
                                          plan.kept * len(_STREAMS) * 3 * THUMB * THUMB,
                                          spill_bytes))
            except _ReadFailed as exc:
                key, a, b = exc.job
                findings.add(path, "read_error", f"reading {_STREAMS[key]}[{a}:{b}] "
                             f"failed: {type(exc.exc).__name__}: {exc.exc}")
                return finish()
            _save_atomic(episode, out_path)
        meta = episode["_contact_meta"]
    manifest.update(pt=str(out_path), status="indexed", kept=plan.kept,
                    drift_left=meta["drift_left"], drift_right=meta["drift_right"],
                    drift_warning=meta["drift_warning"])
    return finish()


def _build(f: h5py.File, plan: _Plan, dev: torch.device, chunk_frames: int, workers: int,
           stack: ExitStack, scratch: _Scratch) -> dict:
    kept = plan.kept
    thumbs = {key: scratch.array(key, (kept, 3, THUMB, THUMB)) for key in _STREAMS}
    # ref_first: the tactile frame of (pre-trim, lag-corrected) camera frame 0.
    ref_first = {}
    for s in SIDES:
        key = f"tactile_{s}"
        try:
            ref_first[s] = thumbnail(f[_STREAMS[key]][plan.lag])
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise _ReadFailed((key, plan.lag, plan.lag + 1), exc) from exc
    ref_first_dev = {s: torch.from_numpy(ref_first[s]).to(dev) for s in SIDES}
    i_first = {s: np.empty(kept, dtype=np.float32) for s in SIDES}

    # Frames are read at the offsets HDF5 reports and decoded on the worker threads
    # (io.h5rows), so reading spreads over the cores instead of queueing behind h5py's
    # one lock; layouts it does not serve are read through h5py on the same threads.
    # The descriptor is h5py's own, duplicated: the file HDF5 indexed, not a namesake.
    fd = os.dup(f.id.get_vfd_handle()) if f.driver == "sec2" else None
    if fd is not None:
        stack.callback(os.close, fd)  # after the pool below has stopped (LIFO)
    readers = {key: RowReader(f[name], fd) for key, name in _STREAMS.items()}
    per_stream = []
    for key, rd in readers.items():
        r0 = plan.first_row(key)
        per_stream.append([(key, a, b)
                           for a, b in _aligned_ranges(r0, r0 + kept, rd.rows, chunk_frames)])
    # Interleave the streams window by window so every stream advances together.
    jobs = [j for window in zip_longest(*per_stream) for j in window if j is not None]

    pool = (stack.enter_context(ThreadPoolExecutor(workers, thread_name_prefix="contact"))
            if workers > 1 else None)
    buffers = _Buffers()

    def consume(key: str, a: int, b: int) -> None:
        rd = readers[key]
        i0 = a - plan.first_row(key)
        dst = thumbs[key][i0:i0 + (b - a)]
        # A few frames at a time, read and thumbnailed while they are still in the
        # core's cache (a 64-frame slice read whole goes out to memory and back: 40 %
        # slower); whole chunks each time, so no chunk is decoded twice.
        step = _step(rd.rows, _FRAMES_IN_CACHE)
        pair = [buffers.get((step, *rd.row_shape), rd.dtype) for _ in range(2)]
        previous = None
        try:
            for n, (lo, hi) in enumerate(_aligned_ranges(a, b, rd.rows, step)):
                frames = pair[n % 2][:hi - lo]
                try:
                    rd.read_into(lo, hi, frames)
                except (OSError, RuntimeError, KeyError, ValueError) as exc:
                    raise _ReadFailed((key, lo, hi), exc) from exc  # HDF5 / filter errors
                out = dst[lo - a:hi - a]
                thumbnails_into(frames, out, repeats=key.startswith("tactile_"),
                                previous=previous)
                previous = (frames[-1], out[-1])
        finally:
            for buf in pair:
                buffers.put(buf)
        if key.startswith("tactile_"):
            side = key.removeprefix("tactile_")
            batch = _batch_for(dev)
            for j in range(0, len(dst), batch):
                x = torch.from_numpy(dst[j:j + batch]).to(dev)
                i_first[side][i0 + j:i0 + j + len(x)] = \
                    mean_l2(x, ref_first_dev[side]).cpu().numpy()

    # One task per slice (read, thumbnails, first-pass metric), one more in flight than
    # there are workers so none waits for the next; the recycled buffers bound memory.
    in_flight: deque = deque()
    try:
        for job in jobs:
            if pool is None:
                consume(*job)
                continue
            in_flight.append(pool.submit(consume, *job))
            while len(in_flight) > workers:
                in_flight.popleft().result()
        while in_flight:
            in_flight.popleft().result()
    finally:
        for fut in in_flight:
            fut.cancel()
        wait(in_flight)

    ep: dict = {}
    view_right = torch.from_numpy(thumbs["view_right"])
    ep["view"] = view_right  # mode1_v1 key; shares storage with view_right
    ep["view_left"] = torch.from_numpy(thumbs["view_left"])
    ep["view_middle"] = torch.from_numpy(thumbs["view_middle"])
    ep["view_right"] = view_right
    for s in SIDES:
        ep[f"tactile_{s}"] = torch.from_numpy(thumbs[f"tactile_{s}"])
    for s in SIDES:
        if s in plan.active:
            ot_ts, ot_pose = plan.ot[s]
            pose = cam_aligned_pose(plan.cam_ts, ot_ts, ot_pose)
        else:
            pose = np.zeros((kept, 7), dtype=np.float32)
        ep[f"sensor_{s}_pose"] = torch.from_numpy(np.ascontiguousarray(pose, np.float32))
    ep["timestamps"] = torch.from_numpy(plan.cam_ts.astype(np.float64))

    meta: dict = {"formula_version": FORMULA_VERSION, "tau": TAU, "rgb_norm": RGB_NORM,
                  "reference_strategy": REFERENCE_STRATEGY}
    refs, idx_pt, drift = {}, {}, {}
    for s in SIDES:
        idx_pt[s] = pick_p01_reference(i_first[s])
        refs[s] = np.array(thumbs[f"tactile_{s}"][idx_pt[s]])
        drift[s] = float(mean_l2(torch.from_numpy(ref_first[s])[None],
                                 torch.from_numpy(refs[s]))[0])
    # The sides in parallel: reading is over, and torch releases the GIL in its kernels.
    second = {s: (pool.submit(_second_pass, thumbs[f"tactile_{s}"], refs[s], dev)
                  if pool is not None else None) for s in SIDES}
    for s in SIDES:
        metrics = (second[s].result() if second[s] is not None
                   else _second_pass(thumbs[f"tactile_{s}"], refs[s], dev))
        for name, values in zip(("intensity", "area", "mixed"), metrics):
            ep[f"tactile_{s}_{name}"] = torch.from_numpy(values)
    for s in SIDES:
        meta[f"ref_first_{s}"] = torch.from_numpy(ref_first[s].copy())
    for s in SIDES:
        meta[f"ref_p01_{s}"] = torch.from_numpy(refs[s])
    for s in SIDES:
        meta[f"ref_p01_idx_{s}"] = int(idx_pt[s] + plan.trim)  # H5 camera-frame coordinates
    for s in SIDES:
        meta[f"drift_{s}"] = drift[s]
    meta["drift_warning"] = bool(max(drift.values()) > DRIFT_WARNING)
    meta["trim_offset"] = int(plan.trim)
    meta["trim_reason"] = TRIM_REASON_OT if plan.trim > 0 else TRIM_REASON_NONE
    meta["pre_trim_n_frames"] = int(plan.n_frames)
    meta["active_sensors"] = list(plan.active)
    meta["gelsight_lag_frames"] = int(plan.lag)
    ep["_contact_meta"] = meta
    return ep


def _second_pass(tactile: np.ndarray, ref: np.ndarray, dev: torch.device
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Metrics of every kept tactile thumbnail against the p01 reference, in batches."""
    n = len(tactile)
    out = tuple(np.empty(n, dtype=np.float32) for _ in range(3))
    ref_dev = torch.from_numpy(ref).to(dev)
    batch = _batch_for(dev)
    for a in range(0, n, batch):
        x = torch.from_numpy(np.asarray(tactile[a:a + batch])).to(dev)
        for dst, values in zip(out, contact_scalars(x, ref_dev)):
            dst[a:a + len(x)] = values.cpu().numpy()
    return out


def _save_atomic(obj: dict, path: Path) -> None:
    """torch.save to a temp file in the target directory, fsync, rename, fsync the dir."""
    with atomic_open(path, sync_dir=True) as fh:
        torch.save(obj, fh)
