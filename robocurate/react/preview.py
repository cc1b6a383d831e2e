"""Per-episode preview MP4 (seed stage 3) and the streamed episode reader the gallery and
event clips share.

``EpisodeSource`` reads a raw episode (reference 1.1) a block of frames at a time: the
three RealSense colour streams (BGR), both GelSight streams (RGB) and the OptiTrack
bodies aligned to the camera ticks (``layout.cam_aligned_pose``). Like the replay viewer
it clamps a shorter stream's index (``min(idx, n - 1)``) and shows a grey tile for an
empty or missing one, reporting each as a finding instead of failing.

``write_preview`` renders every frame through :class:`~robocurate.react.panel.PanelRenderer`
and encodes H.264 (libx264, yuv420p) with PyAV as it goes: memory holds one block of
source frames, never the episode. The MP4 appears atomically (temp file + rename).

Pure library: no Prefect.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import h5py
import hdf5plugin  # noqa: F401  (registers the BLOSC filter raw recordings use)
import numpy as np

from robocurate.findings import Findings
from robocurate.log import get_logger
from robocurate.react.calibration import (Calibration, CalibrationError,
                                          default_calibration_path, load_calibration)
from robocurate.react.detect import ot_loss
from robocurate.react.layout import (FPS, OT_BODIES, SIDES, active_sensors_of,
                                     cam_aligned_pose, episode_key, pt_path)
from robocurate.react.panel import PanelRenderer, ProjectionOverlay
from robocurate.react.thumbs import thumbnail

__all__ = [
    "EpisodeSource",
    "dataset_layout",
    "frozen_masks",
    "intervals_to_mask",
    "open_episode",
    "render_panels",
    "resolve_calibration",
    "resolve_references",
    "write_preview",
]

log = get_logger(pipeline="react", stage="preview")

_READ_ERRORS = (OSError, RuntimeError, ValueError, KeyError)


def dataset_layout(h5_path: str | os.PathLike) -> tuple[Path, str, str] | None:
    """(ROOT, task, date) when ``h5_path`` is ``ROOT/data/<task>/<date>/episode_NNN.h5``."""
    p = Path(h5_path).absolute()
    if len(p.parents) >= 4 and p.parents[2].name == "data":
        return p.parents[3], p.parents[1].name, p.parent.name
    return None


# =========================================================================== reading


class EpisodeSource:
    """Streamed, read-only access to one open episode file (see module docstring)."""

    def __init__(self, f: h5py.File, path: Path, findings: Findings):
        self.f, self.path, self.findings = f, path, findings
        self.key = episode_key(path)
        self.cams = [self._frames(f"realsense/cam{c}/color") for c in range(3)]
        self.gels = {side: self._frames(f"gelsight/{side}/frames") for side in SIDES}
        self.cam_ts = self._timestamps()
        counts = [n for _, n in self.cams] + [n for _, n in self.gels.values()]
        self.T = len(self.cam_ts) if self.cam_ts is not None else max(counts, default=0)
        for name, (ds, n) in [*((f"realsense/cam{c}/color", v) for c, v in enumerate(self.cams)),
                              *((f"gelsight/{s}/frames", v) for s, v in self.gels.items())]:
            if ds is not None and 0 < n < self.T:
                findings.add(path, "short_stream",
                             f"{name} has {n} frames, episode has {self.T}: index clamped to "
                             f"the last frame", severity="warning")
        try:
            self.active = active_sensors_of(f)
        except _READ_ERRORS:
            self.active = []
        self.poses = self._poses()
        attrs = f["metadata"].attrs if isinstance(f.get("metadata"), h5py.Group) else {}
        self.serials = [str(s) for s in _as_list(attrs.get("realsense_serials"))]

    # ------------------------------------------------------------------ set-up

    def _frames(self, name: str) -> tuple[h5py.Dataset | None, int]:
        try:
            ds = self.f.get(name)
        except _READ_ERRORS as exc:
            self.findings.add(self.path, "unreadable_stream", f"{name}: {exc}")
            return None, 0
        if not isinstance(ds, h5py.Dataset):
            self.findings.add(self.path, "missing_modality", f"{name} is absent: grey tile",
                              severity="warning")
            return None, 0
        if ds.ndim != 4 or ds.shape[3] != 3 or ds.dtype != np.uint8:
            self.findings.add(self.path, "bad_stream_shape",
                              f"{name} is {ds.dtype}{ds.shape}, expected uint8 (T, H, W, 3): "
                              f"grey tile", severity="warning")
            return None, 0
        if ds.shape[0] == 0:
            self.findings.add(self.path, "empty_stream", f"{name} has no frames: grey tile",
                              severity="warning")
        return ds, int(ds.shape[0])

    def _timestamps(self) -> np.ndarray | None:
        ds = self.f.get("timestamps")
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 1:
            self.findings.add(self.path, "missing_modality",
                              "timestamps absent: no OptiTrack alignment", severity="warning")
            return None
        return np.asarray(ds[()], dtype=np.float64)

    def _poses(self) -> dict[str, np.ndarray | None]:
        out: dict[str, np.ndarray | None] = {}
        for body in OT_BODIES:
            out[body] = None
            g = self.f.get(f"optitrack/{body}")
            if not isinstance(g, h5py.Group) or self.cam_ts is None:
                continue
            try:
                ts, pose = np.asarray(g["timestamps"][()], float), np.asarray(g["pose"][()], float)
            except _READ_ERRORS:
                self.findings.add(self.path, "bad_optitrack", f"optitrack/{body} unreadable",
                                  severity="warning")
                continue
            if pose.ndim != 2 or pose.shape[1:] != (7,) or ts.shape != (len(pose),):
                self.findings.add(self.path, "bad_optitrack",
                                  f"optitrack/{body}: pose {pose.shape}, timestamps {ts.shape}",
                                  severity="warning")
                continue
            if len(ts):
                out[body] = cam_aligned_pose(self.cam_ts, ts, pose)
        return out

    # ------------------------------------------------------------------ derived

    def trim_offset(self) -> int:
        """First camera frame at which every active sensor has an OptiTrack sample at or
        before it (reference 1.2 trim rule); event coordinates are relative to it."""
        if self.cam_ts is None:
            return 0
        firsts = []
        for side in self.active:
            ds = self.f.get(f"optitrack/sensor_{side}/timestamps")
            if isinstance(ds, h5py.Dataset) and ds.shape and ds.shape[0]:
                firsts.append(float(ds[0]))
        if not firsts:
            return 0
        return int(np.searchsorted(self.cam_ts, max(firsts)))

    def read(self, idxs: Sequence[int]) -> tuple[list, dict, dict]:
        """Frames at ``idxs`` (ascending): (cams[c] -> (k,H,W,3) BGR or None,
        gels[side] -> (k,H,W,3) RGB or None, poses[body] -> (k,7) or None)."""
        idxs = np.asarray(idxs, dtype=np.int64)
        cams = [_read_block(ds, n, idxs) for ds, n in self.cams]
        gels = {side: _read_block(ds, n, idxs) for side, (ds, n) in self.gels.items()}
        poses = {b: (None if p is None else p[np.minimum(idxs, len(p) - 1)])
                 for b, p in self.poses.items()}
        return cams, gels, poses

    def frame(self, ds_name: str, idx: int) -> np.ndarray | None:
        ds = self.gels.get(ds_name, (None, 0))
        block = _read_block(ds[0], ds[1], np.array([idx]))
        return None if block is None else block[0]


def _as_list(v) -> list:
    if v is None:
        return []
    if isinstance(v, (bytes, str)):
        return [v.decode() if isinstance(v, bytes) else v]
    return [x.decode() if isinstance(x, bytes) else x for x in list(v)]


def _read_block(ds: h5py.Dataset | None, n: int, idxs: np.ndarray) -> np.ndarray | None:
    """Frames at ``idxs`` with the viewer's clamp; one contiguous read when dense."""
    if ds is None or n == 0 or len(idxs) == 0:
        return None
    cl = np.minimum(idxs, n - 1)
    lo, hi = int(cl.min()), int(cl.max())
    if hi - lo + 1 <= 2 * len(cl):
        return ds[lo:hi + 1][cl - lo]
    uniq, inv = np.unique(cl, return_inverse=True)
    return np.stack([ds[int(i)] for i in uniq])[inv]


@contextmanager
def open_episode(h5_path: str | os.PathLike, findings: Findings) -> Iterator[EpisodeSource | None]:
    """Yields an :class:`EpisodeSource`, or None (with an ``unreadable_file`` finding)."""
    path = Path(h5_path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        findings.add(path, "unreadable_file", f"cannot open as HDF5: {exc}")
        yield None
        return
    with f:
        try:
            src = EpisodeSource(f, path, findings)
        except _READ_ERRORS as exc:
            findings.add(path, "unreadable_file", f"cannot read HDF5 structure: {exc}")
            src = None
        yield src


# =========================================================================== per episode


def intervals_to_mask(T: int, intervals: Sequence[Sequence[int]]) -> np.ndarray:
    mask = np.zeros(T, dtype=bool)
    for a, b in intervals:
        a, b = max(int(a), 0), min(int(b), T - 1)
        if b >= a:
            mask[a:b + 1] = True
    return mask


def frozen_masks(src: EpisodeSource,
                 frozen: Mapping[str, Sequence[Sequence[int]]] | None = None) -> dict[str, np.ndarray]:
    """side -> per-frame bool. ``frozen`` gives [a, b] intervals in H5 frame coordinates;
    None detects them from the aligned pose of each active side with the ``ot_loss`` rule
    of :mod:`robocurate.react.detect` (bit-identical pose for >= 0.25 s). On the untrimmed
    pose this also rings the start of a take before OptiTrack streams, which is true."""
    T = src.T
    if frozen is not None:
        return {side: intervals_to_mask(T, frozen.get(side, ())) for side in SIDES}
    out = {}
    for side in SIDES:
        pose = src.poses.get(f"sensor_{side}")
        runs = ot_loss(pose) if side in src.active and pose is not None else []
        out[side] = intervals_to_mask(T, runs)
    return out


def resolve_calibration(h5_path: Path, calibration, findings: Findings) -> Calibration | None:
    """``calibration``: a Calibration, a path, or None = ``ROOT/calibration.json``."""
    if isinstance(calibration, Calibration):
        return calibration
    if calibration is None:
        lay = dataset_layout(h5_path)
        if lay is None or not default_calibration_path(lay[0]).is_file():
            findings.add(h5_path, "no_calibration",
                         "no calibration file found: projection overlay off", severity="warning")
            return None
        calibration = default_calibration_path(lay[0])
    try:
        return load_calibration(calibration)
    except CalibrationError as exc:
        findings.add(calibration, "bad_calibration", f"{exc}: projection overlay off",
                     severity="warning")
        return None


def make_overlay(src: EpisodeSource, cal: Calibration | None,
                 findings: Findings) -> ProjectionOverlay | None:
    if cal is None:
        return None
    overlay = ProjectionOverlay(cal, src.serials)
    missing = [i for i in range(3) if not overlay.covers(i)]
    if missing:
        findings.add(src.path, "camera_not_calibrated",
                     f"no calibration for camera(s) {missing} (serials {src.serials}): not overlaid",
                     severity="warning")
    return overlay if len(missing) < 3 else None


def _pt_references(pt: Path, src: EpisodeSource) -> dict[str, np.ndarray] | None:
    """The p01 reference of each side from the .pt's ``_contact_meta``.

    The stored thumbnail is only 128x128, so the full-resolution H5 frame it came from is
    preferred: ``ref_p01_idx`` is tried as an H5 index and as a trimmed index (+
    ``trim_offset``; builders differ, reference 1.2) and accepted only when its own
    thumbnail matches the stored one.
    """
    import torch  # heavy import: only when a .pt is actually there

    ep = torch.load(pt, map_location="cpu", weights_only=True, mmap=True)
    meta = ep.get("_contact_meta") if isinstance(ep, dict) else None
    if not isinstance(meta, dict):
        return None
    trim = int(meta.get("trim_offset", 0) or 0)
    refs = {}
    for side in SIDES:
        thumb = meta.get(f"ref_p01_{side}")
        if thumb is None:
            continue
        thumb = np.asarray(thumb).astype(np.uint8)
        if thumb.ndim == 3 and thumb.shape[0] == 3:
            thumb = thumb.transpose(1, 2, 0)  # CHW -> HWC, still RGB
        refs[side] = np.ascontiguousarray(thumb)
        idx = meta.get(f"ref_p01_idx_{side}")
        if idx is None:
            continue
        for cand in dict.fromkeys((int(idx), int(idx) + trim)):
            if 0 <= cand < src.gels[side][1]:
                full = src.frame(side, cand)
                if full is not None and np.abs(
                        thumbnail(full).transpose(1, 2, 0).astype(np.int16)
                        - refs[side]).mean() < 2.0:
                    refs[side] = full
                    break
    return refs or None


def resolve_references(src: EpisodeSource, ref_frames, findings: Findings
                       ) -> tuple[dict[str, np.ndarray | None], str]:
    """GelSight references for the diff tiles: given > the .pt's p01 > H5 frame 0."""
    if ref_frames is not None:
        return dict(ref_frames), "given"
    lay = dataset_layout(src.path)
    if lay is not None:
        pt = pt_path(lay[0], lay[1], lay[2], src.path.name)
        if pt.is_file():
            try:
                refs = _pt_references(pt, src)
                if refs:
                    return refs, "pt:ref_p01"
            except Exception as exc:  # noqa: BLE001  any unreadable .pt -> fall back
                findings.add(pt, "unreadable_pt", f"reference frames not loaded: {exc}",
                             severity="warning")
    refs = {side: src.frame(side, 0) for side in SIDES}
    return refs, "h5:frame0"


def render_panels(src: EpisodeSource, renderer: PanelRenderer, indices: Sequence[int], *,
                  marks: Mapping[str, tuple[np.ndarray, str]], chunk: int = 16,
                  timing: dict | None = None, fps: float = FPS
                  ) -> Iterator[tuple[int, np.ndarray]]:
    """(index, BGR panel) for ``indices`` (ascending), reading ``chunk`` frames at a time.

    ``marks``: side -> (per-frame bool mask, label): where the mask is set the sensor is
    circled in red with that label. ``timing`` accumulates ``read_s`` and ``compose_s``."""
    indices = np.asarray(indices, dtype=np.int64)
    timing = timing if timing is not None else {}
    timing.setdefault("read_s", 0.0)
    timing.setdefault("compose_s", 0.0)
    for k in range(0, len(indices), chunk):
        block = indices[k:k + chunk]
        t0 = time.perf_counter()
        cams, gels, poses = src.read(block)
        t1 = time.perf_counter()
        timing["read_s"] += t1 - t0
        for j, i in enumerate(block):
            i = int(i)
            on = {s: label for s, (m, label) in marks.items() if i < len(m) and m[i]}
            t2 = time.perf_counter()
            panel = renderer.render(
                [None if c is None else c[j] for c in cams],
                {s: None if g is None else g[j] for s, g in gels.items()},
                {b: None if p is None else p[j] for b, p in poses.items()},
                marks=on, scratch=True,  # the block was read for this loop only
                status=f"{src.key}  {i + 1}/{src.T}  t={i / fps:7.2f}s")
            timing["compose_s"] += time.perf_counter() - t2
            yield i, panel


def prepare(src: EpisodeSource, h5_path: Path, findings: Findings, *, calibration, projection: bool,
            ref_frames) -> tuple[PanelRenderer, dict]:
    """The renderer for an episode plus what the manifest says about it."""
    cal = resolve_calibration(h5_path, calibration, findings) if projection else None
    overlay = make_overlay(src, cal, findings) if cal is not None else None
    refs, how = resolve_references(src, ref_frames, findings)
    return (PanelRenderer(overlay=overlay, refs_rgb=refs, title=src.key),
            {"projection": overlay is not None, "reference": how})


# =========================================================================== MP4


def write_preview(h5_path: str | os.PathLike, out_mp4: str | os.PathLike, *,
                  calibration: Calibration | str | os.PathLike | None = None,
                  projection: bool = True,
                  frozen: Mapping[str, Sequence[Sequence[int]]] | None = None,
                  ref_frames: Mapping[str, np.ndarray | None] | None = None,
                  fps: float = 30, chunk: int = 16, crf: int = 23,
                  preset: str = "veryfast") -> dict:
    """Render the episode's panels into an H.264 MP4 (1280x480, yuv420p) at ``out_mp4``.

    ``frozen``: side -> [[a, b], ...] in H5 frame coordinates (None: detected from the
    poses); ``ref_frames``: side -> RGB GelSight reference (None: .pt p01, else frame 0).
    Returns ``{"path", "output", "ok", "frames", "seconds", "fps", "timing",
    "projection", "reference", "findings"}``; ``output`` is None when nothing was written.
    """
    h5_path, out_mp4 = Path(h5_path), Path(out_mp4)
    findings = Findings()
    result = {"path": str(h5_path), "output": None, "ok": False, "frames": 0,
              "seconds": 0.0, "fps": 0.0, "timing": {}, "projection": False,
              "reference": None}
    t_start = time.perf_counter()
    with open_episode(h5_path, findings) as src:
        if src is not None and src.T == 0:
            findings.add(h5_path, "empty_episode", "episode has no frames: no preview")
        elif src is not None:
            try:
                renderer, info = prepare(src, h5_path, findings, calibration=calibration,
                                         projection=projection, ref_frames=ref_frames)
                result.update(info)
                timing: dict = {}
                marks = {s: (m, "FROZEN") for s, m in frozen_masks(src, frozen).items()}
                panels = render_panels(src, renderer, range(src.T), marks=marks,
                                       chunk=chunk, timing=timing, fps=fps)
                n = _encode_mp4(out_mp4, (p for _, p in panels), fps, crf, preset, timing)
                result.update(output=str(out_mp4), ok=True, frames=n,
                              timing={k: round(v, 4) for k, v in timing.items()})
            except _READ_ERRORS + (av.error.FFmpegError,) as exc:
                findings.add(h5_path, "preview_failed", f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - t_start
    result["seconds"] = round(seconds, 4)
    result["fps"] = round(result["frames"] / seconds, 2) if seconds > 0 else 0.0
    result["findings"] = findings.to_list()
    result["ok"] = result["ok"] and not any(f.severity == "error" for f in findings)
    log.info("preview", path=str(h5_path), ok=result["ok"], frames=result["frames"],
             fps=result["fps"])
    return result


def _encode_mp4(path: Path, panels: Iterator[np.ndarray], fps: float, crf: int, preset: str,
                timing: dict) -> int:
    """Encode BGR panels as they arrive; the file appears atomically or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    n = 0
    timing.setdefault("encode_s", 0.0)
    try:
        with av.open(tmp, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height = 1280, 480
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "preset": preset}
            for panel in panels:
                t0 = time.perf_counter()
                # bgr24 in: swscale converts BGR -> YUV itself, no RGB copy of the panel.
                frame = av.VideoFrame.from_ndarray(panel, format="bgr24")
                frame.pts = n
                container.mux(stream.encode(frame))
                n += 1
                timing["encode_s"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            container.mux(stream.encode(None))
            timing["encode_s"] += time.perf_counter() - t0
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n
