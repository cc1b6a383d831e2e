"""Per-event QA clips for borderline failures (seed stage 7, reference 1.6).

For each freeze, teleport or spike event whose length lies within ``[min_s, max_s]``
(default 1-5 s, the seed's ``--thr_min_s 1 --thr_max_s 5``), one short GIF around the
event: the event plus ``context_s`` on each side, at most ``max_frames`` (~60) frames
spread evenly over that window, the same panel and overlay as the preview, and the
affected sensor circled in red (and its GelSight tiles framed, labelled with the event
kind) while the event lasts. GIF encoding as the gallery's :func:`encode_gif` with the
freeze-clip settings of ``inspect_freezes_v3``: 30 fps, at most 8 MiB.

Events are dicts in the coordinates of ``bad_frames.json`` / ``freeze_intervals.json``:
``a``, ``b`` inclusive trimmed-pt frames (``_h5_a``/``_h5_b``, when present, are raw-file
frames and win), ``side`` ``left``/``right`` (or ``L``/``R``; None = both sides, e.g. an
intensity spike, which the published detector flags on either side), ``kind`` one of
``freeze``/``teleport``/``spike`` (absent = ``freeze``, as in ``freeze_intervals.json``;
the breakdown's mode names ``ot_loss``/``pose_teleport``/``gelsight_led_flicker`` are
accepted), ``length_s`` (absent = ``(b - a + 1) / 30``), ``id``.

:func:`events_from_bad_frames` turns one ``bad_frames.json`` episode entry into such
events (teleports per side, spikes for both sides).

Pure library: no Prefect.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from robocurate.findings import Findings
from robocurate.io.atomic import atomic_write_bytes, atomic_write_json
from robocurate.log import get_logger
from robocurate.react.calibration import Calibration
from robocurate.react.gallery import encode_gif
from robocurate.react.layout import FPS, SIDES, episode_key
from robocurate.react.preview import intervals_to_mask, open_episode, prepare, render_panels

__all__ = [
    "CLIP_KINDS",
    "CLIP_MAX_BYTES",
    "CLIPS_MANIFEST_SUFFIX",
    "clips_manifest_path",
    "clip_window",
    "event_kind",
    "event_length_s",
    "events_from_bad_frames",
    "select_events",
    "write_event_clips",
]

log = get_logger(pipeline="react", stage="clips")

CLIP_KINDS = ("freeze", "teleport", "spike")
CLIP_FPS = 30.0
CLIP_MAX_BYTES = 8 * 1024 * 1024
CLIP_MAX_FRAMES = 60
CONTEXT_S = 0.5
CLIPS_MANIFEST_SUFFIX = ".clips.json"
_KIND_ALIASES = {"freeze": "freeze", "ot_loss": "freeze", "pose_freeze": "freeze",
                 "teleport": "teleport", "pose_teleport": "teleport",
                 "spike": "spike", "intensity_spike": "spike", "intensity_spikes": "spike",
                 "gelsight_led_flicker": "spike"}
_SIDE_ALIASES = {"left": "left", "l": "left", "right": "right", "r": "right"}
_LABELS = {"freeze": "FROZEN", "teleport": "TELEPORT", "spike": "SPIKE"}


def event_kind(ev: Mapping) -> str | None:
    return _KIND_ALIASES.get(str(ev.get("kind", ev.get("mode", "freeze"))).lower())


def event_sides(ev: Mapping) -> tuple[str, ...]:
    side = ev.get("side")
    if side is None:
        return SIDES
    s = _SIDE_ALIASES.get(str(side).lower())
    return (s,) if s else ()


def event_length_s(ev: Mapping, fps: float = FPS) -> float:
    if isinstance(ev.get("length_s"), (int, float)):
        return float(ev["length_s"])
    return (int(ev["b"]) - int(ev["a"]) + 1) / fps


def events_from_bad_frames(episode: str, entry: Mapping) -> list[dict]:
    """Teleport and spike events of one ``bad_frames.json`` episode entry (1.7.2)."""
    out = []
    for key, kind, side in (("pose_teleports_L", "teleport", "left"),
                            ("pose_teleports_R", "teleport", "right"),
                            ("intensity_spikes", "spike", None)):
        for a, b in entry.get(key) or ():
            tag = side or "both"
            out.append({"id": f"{episode}:{kind}:{tag}:{int(a)}-{int(b)}", "episode": episode,
                        "kind": kind, "side": side, "a": int(a), "b": int(b),
                        "length_s": round((int(b) - int(a) + 1) / FPS, 3)})
    return out


def select_events(events: Sequence[Mapping], *, min_s: float = 1.0, max_s: float = 5.0,
                  kinds: Sequence[str] = CLIP_KINDS) -> list[tuple[Mapping, bool, str]]:
    """(event, selected, reason) per event: a clip is made for freeze, teleport and spike
    events with ``min_s <= length_s <= max_s``."""
    out = []
    for ev in events:
        kind = event_kind(ev)
        try:
            length = event_length_s(ev)
        except (KeyError, TypeError, ValueError):
            out.append((ev, False, "event has no a/b or length_s"))
            continue
        if kind is None or kind not in kinds:
            out.append((ev, False, f"kind {ev.get('kind')!r} not in {list(kinds)}"))
        elif not (min_s <= length <= max_s):
            out.append((ev, False, f"length {length:.3f} s outside [{min_s}, {max_s}]"))
        elif not event_sides(ev):
            out.append((ev, False, f"unknown side {ev.get('side')!r}"))
        else:
            out.append((ev, True, "selected"))
    return out


def clip_window(a: int, b: int, T: int, *, context: int, max_frames: int) -> np.ndarray:
    """Frame indices of a clip: ``[a - context, b + context]`` clipped to the episode,
    at most ``max_frames`` of them spread evenly (first and last kept)."""
    lo, hi = max(0, a - context), min(T - 1, b + context)
    if hi < lo:
        return np.zeros(0, dtype=np.int64)
    n = hi - lo + 1
    if n <= max_frames:
        return np.arange(lo, hi + 1, dtype=np.int64)
    return np.unique(np.round(np.linspace(lo, hi, max_frames)).astype(np.int64))


def _safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "event"


def write_event_clips(h5_path: str | os.PathLike, events: Sequence[Mapping],
                      out_dir: str | os.PathLike, *, min_s: float = 1.0, max_s: float = 5.0,
                      kinds: Sequence[str] = CLIP_KINDS, fps: float = CLIP_FPS,
                      max_bytes: int = CLIP_MAX_BYTES, max_frames: int = CLIP_MAX_FRAMES,
                      context_s: float = CONTEXT_S, trim_offset: int | None = None,
                      calibration: Calibration | str | os.PathLike | None = None,
                      projection: bool = True,
                      ref_frames: Mapping[str, np.ndarray | None] | None = None,
                      write_manifest: bool = True) -> list[dict]:
    """One GIF per selected event of this episode; one result per event given.

    Each result: ``{"id", "kind", "side", "a", "b", "length_s", "selected", "reason",
    "clip" (path or None), "bytes", "colors", "frames", "findings"}`` (+ ``h5_frames``,
    ``seconds`` for rendered ones). ``trim_offset`` (None: from the raw file's OptiTrack
    start, reference 1.2) maps trimmed event frames to raw frames when an event has no
    ``_h5_a``/``_h5_b``. With ``write_manifest`` the selected results are also merged
    into :func:`clips_manifest_path` (one file per episode, so episodes processed in
    parallel never race), from which the clip paths can go into ``freeze_intervals.json``.
    """
    h5_path, out_dir = Path(h5_path), Path(out_dir)
    findings = Findings()
    results: list[dict] = []
    chosen = select_events(events, min_s=min_s, max_s=max_s, kinds=kinds)
    for ev, ok, reason in chosen:
        results.append({"id": str(ev.get("id") or _default_id(h5_path, ev)),
                        "kind": event_kind(ev), "side": ev.get("side"), "a": ev.get("a"),
                        "b": ev.get("b"), "length_s": ev.get("length_s"), "selected": ok,
                        "reason": reason, "clip": None, "bytes": None, "colors": None,
                        "frames": 0, "findings": []})
    todo = [(r, ev) for r, (ev, ok, _) in zip(results, chosen) if ok]
    if todo:
        with open_episode(h5_path, findings) as src:
            if src is None:
                for r, _ in todo:
                    r["reason"] = "episode unreadable"
            else:
                _render_clips(src, h5_path, out_dir, todo, findings, fps=fps,
                              max_bytes=max_bytes, max_frames=max_frames, context_s=context_s,
                              trim_offset=trim_offset, calibration=calibration,
                              projection=projection, ref_frames=ref_frames)
    episode_findings = findings.to_list()
    for r in results:
        if r["selected"]:
            r["findings"] = episode_findings + r["findings"]
    if write_manifest and todo:
        _merge_manifest(clips_manifest_path(out_dir, h5_path), results)
    return results


def clips_manifest_path(out_dir: str | os.PathLike, h5_path: str | os.PathLike) -> Path:
    """``out_dir/<date>_episode_NNN.clips.json``: ``{"episode", "clips": {id: result}}``."""
    key = episode_key(h5_path)
    return Path(out_dir) / f"{_safe_name(key)}{CLIPS_MANIFEST_SUFFIX}"


def _default_id(h5_path: Path, ev: Mapping) -> str:
    return f"{episode_key(h5_path)}:{event_kind(ev)}:{ev.get('side') or 'both'}:" \
           f"{ev.get('a')}-{ev.get('b')}"


def _render_clips(src, h5_path: Path, out_dir: Path, todo, findings: Findings, *, fps,
                  max_bytes, max_frames, context_s, trim_offset, calibration, projection,
                  ref_frames) -> None:
    try:
        renderer, _ = prepare(src, h5_path, findings, calibration=calibration,
                              projection=projection, ref_frames=ref_frames)
        trim = src.trim_offset() if trim_offset is None else int(trim_offset)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        findings.add(h5_path, "clips_failed", f"{type(exc).__name__}: {exc}")
        return
    context = int(round(context_s * FPS))
    for r, ev in todo:
        t0 = time.perf_counter()
        own = Findings()
        try:
            a = int(ev["_h5_a"]) if "_h5_a" in ev else int(ev["a"]) + trim
            b = int(ev["_h5_b"]) if "_h5_b" in ev else int(ev["b"]) + trim
        except (KeyError, TypeError, ValueError) as exc:
            own.add(h5_path, "bad_event", f"event {r['id']}: no usable a/b ({exc})", item=r["id"])
            r["findings"] = own.to_list()
            continue
        idxs = clip_window(a, b, src.T, context=context, max_frames=max_frames)
        if len(idxs) == 0:
            own.add(h5_path, "event_out_of_range",
                    f"event {r['id']} frames [{a}, {b}] outside the episode (T={src.T})",
                    item=r["id"])
            r["findings"] = own.to_list()
            continue
        label = _LABELS[r["kind"]]
        marks = {s: (intervals_to_mask(src.T, [(a, b)]), label) for s in event_sides(ev)}
        try:
            frames = [cv2.cvtColor(p, cv2.COLOR_BGR2RGB)  # once, for PIL
                      for _, p in render_panels(src, renderer, idxs, marks=marks)]
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            own.add(h5_path, "clip_failed", f"event {r['id']}: {type(exc).__name__}: {exc}",
                    item=r["id"])
            r["findings"] = own.to_list()
            continue
        data, enc = encode_gif(frames, fps=fps, max_bytes=max_bytes)
        r.update(frames=len(frames), colors=enc["colors"], h5_frames=[a, b],
                 seconds=round(time.perf_counter() - t0, 4))
        if data is None:
            own.add(h5_path, "gif_over_cap", f"event {r['id']}: over {max_bytes} bytes even at "
                    f"{enc['size']} px, {enc['colors']} colours", item=r["id"])
        else:
            out = out_dir / f"{_safe_name(r['id'])}.gif"
            try:
                atomic_write_bytes(out, data)
                r.update(clip=str(out), bytes=len(data))
            except OSError as exc:
                own.add(out, "write_failed", f"{type(exc).__name__}: {exc}", item=r["id"])
        r["findings"] = own.to_list()
        log.info("clip", id=r["id"], clip=r["clip"], frames=len(frames))


def _merge_manifest(path: Path, results: list[dict]) -> None:
    """id -> result, merged with the entries of earlier runs for other events."""
    import json

    doc: dict = {"episode": path.name.removesuffix(CLIPS_MANIFEST_SUFFIX), "clips": {}}
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(old, dict) and isinstance(old.get("clips"), dict):
            doc = old
    except (OSError, ValueError):
        pass
    for r in results:
        if r["selected"]:
            doc["clips"][r["id"]] = {k: r[k] for k in ("kind", "side", "a", "b", "length_s",
                                                        "clip", "bytes", "colors")}
    atomic_write_json(path, doc)
