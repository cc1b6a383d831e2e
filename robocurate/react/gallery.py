"""Per-episode gallery GIF for the dataset card (seed stage 6, reference 1.6 ``save_gif``).

60 panels sampled evenly over [2 %, 98 %] of the episode, the same panel and projection
overlay as the preview MP4, encoded by :func:`encode_gif`:

- one palette for the whole GIF: a mosaic of <= 16 evenly spaced frames (pasted side by
  side, every second pixel of each: the colour statistics are the same at a quarter of
  the median-cut cost) quantised with ``MEDIANCUT`` to 256 colours (13 of them reserved
  for the overlay's exact colours: sensor dots, axes, FROZEN red, labels), no dithering; every
  frame is then mapped to that palette, no dithering. Quantising against one fixed
  palette is what makes this fast: PIL's plain ``save_all`` of RGB frames builds a new
  palette per frame (~8 s for 60 panels);
- saved with the palette passed explicitly (one global colour table, no per-frame local
  tables, which PIL otherwise writes for every delta frame) and ``optimize=False``
  (PIL's optimizer re-indexes frames to the colours each uses: per-frame palettes again,
  and larger files in our measurements);
- at most ``max_bytes`` (4 MiB): on overflow the spatial resolution shrinks first (scale
  from the size ratio, down to ``min_scale`` = 0.5), then the palette in steps of 32
  colours down to 128 and never below; a file still too big then keeps shrinking
  spatially at 128 colours (down to 160 px wide) rather than break the hard cap. Nothing
  is written when even that fails (a finding says so).

Output ``figures/episode_previews/<task>/<date>/episode_NNN.gif`` (:func:`gallery_path`),
written atomically. Frames are RGB for PIL: the BGR panel is converted once per frame.

Pure library: no Prefect.
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from robocurate.findings import Findings
from robocurate.io.atomic import atomic_write_bytes
from robocurate.log import get_logger
from robocurate.react.calibration import Calibration
from robocurate.react.panel import (AXIS_COLORS, BODY_COLORS, FROZEN_COLOR, GREY,
                                    SIDE_COLORS, TEXT_COLOR)
from robocurate.react.preview import (dataset_layout, frozen_masks, open_episode, prepare,
                                      render_panels)

__all__ = [
    "GALLERY_FRAMES",
    "GALLERY_MAX_BYTES",
    "GALLERY_SPAN",
    "encode_gif",
    "gallery_indices",
    "gallery_path",
    "write_gallery",
]

log = get_logger(pipeline="react", stage="gallery")

GALLERY_FRAMES = 60
GALLERY_SPAN = (0.02, 0.98)
GALLERY_MAX_BYTES = 4 * 1024 * 1024
GALLERY_FPS = 15.0  # save_gif's default
PALETTE_COLORS = 256
MIN_PALETTE = 128
PALETTE_STEP = 32
MIN_SCALE = 0.5
FLOOR_WIDTH = 160
MOSAIC_FRAMES = 16
PROBE_STEP = 8


def gallery_path(root: str | os.PathLike, task: str, date: str, episode: str) -> Path:
    stem = Path(episode).name.removesuffix(".h5")
    return Path(root) / "figures" / "episode_previews" / task / date / f"{stem}.gif"


def gallery_indices(T: int, n: int = GALLERY_FRAMES,
                    span: tuple[float, float] = GALLERY_SPAN) -> np.ndarray:
    """``n`` frame indices evenly over ``span`` of a ``T``-frame episode (repeats when T < n)."""
    if T <= 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = span[0] * (T - 1), span[1] * (T - 1)
    return np.clip(np.round(np.linspace(lo, hi, n)), 0, T - 1).astype(np.int64)


# =========================================================================== encoder


def _reserved_rgb() -> list[tuple[int, int, int]]:
    """The overlay's and labels' exact colours (RGB). A sensor dot covers a few dozen
    pixels of a 600k-pixel panel, too few for median cut to give it an entry of its own:
    without reserved entries the blue right-sensor dot came out teal."""
    bgr = [*SIDE_COLORS.values(), *AXIS_COLORS, FROZEN_COLOR, *BODY_COLORS.values(),
           TEXT_COLOR, (0, 0, 0), (255, 255, 255), (GREY, GREY, GREY)]
    return list(dict.fromkeys(tuple(int(v) for v in c[::-1]) for c in bgr))


def _palette(frames: Sequence[np.ndarray], colors: int) -> Image.Image:
    """Median cut of a mosaic of <= 16 frames to ``colors`` entries, of which the reserved
    overlay colours are a fixed part."""
    pick = np.unique(np.round(np.linspace(0, len(frames) - 1,
                                          min(MOSAIC_FRAMES, len(frames)))).astype(int))
    mosaic = np.concatenate([frames[i][::2, ::2] for i in pick], axis=1)
    reserved = _reserved_rgb()
    q = Image.fromarray(np.ascontiguousarray(mosaic)).quantize(
        colors - len(reserved), method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    entries = q.getpalette()[:3 * (colors - len(reserved))]
    entries += [v for c in reserved for v in c]
    entries += entries[-3:] * (colors - len(entries) // 3)  # a short median cut: pad
    pal = Image.new("P", (1, 1))
    pal.putpalette(entries)
    return pal


def _encode(frames: Sequence[np.ndarray], pal: Image.Image, fps: float) -> bytes:
    ims = [Image.fromarray(f).quantize(palette=pal, dither=Image.Dither.NONE) for f in frames]
    buf = io.BytesIO()
    # Passing the palette explicitly makes PIL write it once as the global colour table;
    # without it PIL gives every cropped delta frame its own local copy of the table.
    ims[0].save(buf, format="GIF", save_all=True, append_images=ims[1:],
                duration=round(1000 / fps), loop=0, optimize=False, disposal=0,
                palette=bytes(pal.getpalette()))
    return buf.getvalue()


def _resized(frames: Sequence[np.ndarray], scale: float) -> list[np.ndarray]:
    if scale >= 1.0:
        return list(frames)
    h, w = frames[0].shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]


def encode_gif(frames_rgb: Sequence[np.ndarray], *, fps: float = GALLERY_FPS,
               max_bytes: int = GALLERY_MAX_BYTES, palette_colors: int = PALETTE_COLORS,
               min_palette: int = MIN_PALETTE, palette_step: int = PALETTE_STEP,
               min_scale: float = MIN_SCALE, floor_width: int = FLOOR_WIDTH
               ) -> tuple[bytes | None, dict]:
    """Animated GIF bytes of ``frames_rgb`` (equal-size HxWx3 uint8 RGB) within ``max_bytes``.

    Returns (bytes or None when the cap cannot be met, info) with info ``{"bytes",
    "colors", "scale", "size": [w, h], "attempts": [[scale, colors, bytes], ...]}``; an
    attempt with negative bytes is the size estimated from a probe of every 8th frame.
    """
    if not frames_rgb:
        raise ValueError("no frames to encode")
    w0 = frames_rgb[0].shape[1]
    floor_scale = min(1.0, floor_width / w0)
    scale, colors = 1.0, max(min_palette, palette_colors)
    pal, pal_key = _palette(frames_rgb, colors), colors
    attempts: list[list] = []
    # Probe: every PROBE_STEP-th frame at full size. Frames further apart differ more, so
    # the extrapolated size errs high; only a clear overflow (> 1.15x) starts the real
    # encode already shrunk, which skips a doomed full-size encode (the slowest step).
    if len(frames_rgb) >= 2 * PROBE_STEP:
        probe = frames_rgb[::PROBE_STEP]
        est = len(_encode(probe, pal, fps)) * len(frames_rgb) / len(probe)
        attempts.append([1.0, colors, -int(est)])  # negative: an estimate, not a file
        if est > 1.15 * max_bytes:
            scale = max(min_scale, math.sqrt(max_bytes / est) * 0.95)
    while True:
        frames = _resized(frames_rgb, scale)
        if pal_key != colors:  # a spatial shrink keeps the palette: same colours, fewer pixels
            pal, pal_key = _palette(frames, colors), colors
        data = _encode(frames, pal, fps)
        attempts.append([round(scale, 4), colors, len(data)])
        h, w = frames[0].shape[:2]
        info = {"bytes": len(data), "colors": colors, "scale": round(scale, 4), "size": [w, h],
                "attempts": attempts}
        if len(data) <= max_bytes:
            return data, info
        # LZW output grows about linearly with the pixel count: aim just under the cap.
        target = scale * math.sqrt(max_bytes / len(data)) * 0.95
        if colors == palette_colors and scale > min_scale:
            scale = max(min_scale, target)
        elif colors > min_palette:
            colors = max(min_palette, colors - palette_step)
        elif scale > floor_scale:
            scale = max(floor_scale, target)
        else:
            info["bytes"] = None
            return None, info


# =========================================================================== per episode


def write_gallery(h5_path: str | os.PathLike, out_gif: str | os.PathLike | None = None, *,
                  calibration: Calibration | str | os.PathLike | None = None,
                  projection: bool = True,
                  frozen: Mapping[str, Sequence[Sequence[int]]] | None = None,
                  ref_frames: Mapping[str, np.ndarray | None] | None = None,
                  n_frames: int = GALLERY_FRAMES, span: tuple[float, float] = GALLERY_SPAN,
                  fps: float = GALLERY_FPS, max_bytes: int = GALLERY_MAX_BYTES) -> dict:
    """Render and write the episode's gallery GIF.

    ``out_gif`` None -> :func:`gallery_path` of the dataset the ``.h5`` sits in
    (``ROOT/data/<task>/<date>/``). ``frozen`` / ``ref_frames`` / ``calibration`` as for
    :func:`robocurate.react.preview.write_preview`. Returns ``{"path", "output", "ok",
    "frames", "indices", "bytes", "colors", "scale", "size", "attempts", "seconds",
    "timing", "projection", "reference", "findings"}``; ``output`` None = nothing written.
    """
    h5_path = Path(h5_path)
    findings = Findings()
    t_start = time.perf_counter()
    result: dict = {"path": str(h5_path), "output": None, "ok": False, "frames": 0,
                    "indices": [], "bytes": None, "colors": None, "scale": None, "size": None,
                    "attempts": [], "seconds": 0.0, "timing": {}, "projection": False,
                    "reference": None}
    if out_gif is None:
        lay = dataset_layout(h5_path)
        if lay is None:
            findings.add(h5_path, "no_output_path",
                         "not under ROOT/data/<task>/<date>/ and no out_gif given")
        else:
            out_gif = gallery_path(lay[0], lay[1], lay[2], h5_path.name)
    if out_gif is not None:
        with open_episode(h5_path, findings) as src:
            if src is not None and src.T == 0:
                findings.add(h5_path, "empty_episode", "episode has no frames: no gallery GIF")
            elif src is not None:
                _render_and_write(src, h5_path, Path(out_gif), findings, result,
                                  calibration=calibration, projection=projection, frozen=frozen,
                                  ref_frames=ref_frames, n_frames=n_frames, span=span, fps=fps,
                                  max_bytes=max_bytes)
    result["seconds"] = round(time.perf_counter() - t_start, 4)
    result["findings"] = findings.to_list()
    result["ok"] = result["output"] is not None and not any(
        f.severity == "error" for f in findings)
    log.info("gallery", path=str(h5_path), ok=result["ok"], bytes=result["bytes"],
             seconds=result["seconds"])
    return result


def _render_and_write(src, h5_path: Path, out_gif: Path, findings: Findings, result: dict, *,
                      calibration, projection, frozen, ref_frames, n_frames, span, fps,
                      max_bytes) -> None:
    try:
        renderer, info = prepare(src, h5_path, findings, calibration=calibration,
                                 projection=projection, ref_frames=ref_frames)
        result.update(info)
        idxs = gallery_indices(src.T, n_frames, span)
        marks = {s: (m, "FROZEN") for s, m in frozen_masks(src, frozen).items()}
        timing: dict = {}
        frames = [cv2.cvtColor(p, cv2.COLOR_BGR2RGB)  # the one BGR -> RGB, for PIL
                  for _, p in render_panels(src, renderer, idxs, marks=marks, timing=timing)]
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        findings.add(h5_path, "gallery_failed", f"reading frames: {type(exc).__name__}: {exc}")
        return
    t0 = time.perf_counter()
    data, enc = encode_gif(frames, fps=fps, max_bytes=max_bytes)
    timing["encode_s"] = time.perf_counter() - t0
    result.update(frames=len(frames), indices=idxs.tolist(), colors=enc["colors"],
                  scale=enc["scale"], size=enc["size"], attempts=enc["attempts"],
                  timing={k: round(v, 4) for k, v in timing.items()})
    if data is None:
        findings.add(h5_path, "gif_over_cap",
                     f"cannot fit {len(frames)} frames under {max_bytes} bytes even at "
                     f"{enc['size']} px and {enc['colors']} colours: not written")
        return
    try:
        atomic_write_bytes(out_gif, data)
    except OSError as exc:
        findings.add(out_gif, "write_failed", f"{type(exc).__name__}: {exc}")
        return
    result.update(output=str(out_gif), bytes=len(data))
