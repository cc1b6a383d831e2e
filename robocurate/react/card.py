"""React dataset card: the README "At a glance" counters, and a review flag on docs/quality.md.

What the counters are made of (reference 1.7, 1.8; seed stage 9):

- episodes, frames, duration: one episode per ``processed/<mode>/<task>/<date>/episode_NNN.pt``
  (what the Hub config publishes); frames = ``len(pt["tactile_left_mixed"])``; duration =
  frames / 30 Hz.
- contact time: a frame is in contact when ``tactile_left_mixed > 0.4`` or
  ``tactile_right_mixed > 0.4`` (the 0.4 ``TACTILE_THRESHOLD`` the published segments use for
  ``contact_pct``). A contact event is a run of consecutive contact frames on one sensor.
- bad frames (any mode): ``sum(total_bad_frames) / sum(n_frames)`` over
  ``bad_frames.json:episodes``.
- bad frames per mode: ``modes.<mode>.frames / total_frames`` of
  ``data_quality_breakdown.json``; without a breakdown, the per-mode unions of the
  ``bad_frames.json`` intervals (``intensity_spikes`` -> ``gelsight_led_flicker``,
  ``pose_teleports_{L,R}`` -> ``pose_teleport``, ``ot_loss_{L,R}`` -> ``ot_loss``).

Review flag: ``figures/dataset_figures/card_state.json`` keeps the counters of the last refresh
and the per-mode percentages ``docs/quality.md`` was last reviewed against (the baseline).
When a mode appears that the baseline did not have (0 -> >0 frames) or a mode moves by more
than 0.5 percentage points from the baseline, a review block (between two markers) is put at
the top of ``docs/quality.md`` and a warning finding is returned. A person deletes the block
once the page is updated; the next refresh then takes the percentages they reviewed as the new
baseline. Comparing with the reviewed baseline, not just the previous refresh, means a slow
drift of several small moves is still caught.

Pure library: no Prefect.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from robocurate.findings import Findings
from robocurate.hub.card import BEGIN, END, write_card
from robocurate.io.atomic import atomic_write_bytes, atomic_write_json
from robocurate.react.layout import DEFAULT_MODE, FPS, SIDES
from robocurate.report import now_iso

__all__ = [
    "BAD_FRAMES",
    "BREAKDOWN",
    "CARD_STATE",
    "CONTACT_THRESHOLD",
    "MOVE_POINTS",
    "QUALITY_DOC",
    "REVIEW_BEGIN",
    "REVIEW_END",
    "card_counters_on_disk",
    "dataset_facts",
    "glance_counters",
    "mode_of_field",
    "mode_frames",
    "refresh_card",
    "render_counter",
]

FIGURES_DIR = Path("figures") / "dataset_figures"
BAD_FRAMES = FIGURES_DIR / "bad_frames.json"
BREAKDOWN = FIGURES_DIR / "data_quality_breakdown.json"
CARD_STATE = FIGURES_DIR / "card_state.json"
QUALITY_DOC = Path("docs") / "quality.md"
CONTACT_THRESHOLD = 0.4
MOVE_POINTS = 0.5
TITLE = "React (Tactile-Visual Manipulation)"
REVIEW_BEGIN = "<!-- robocurate:quality-review:begin -->"
REVIEW_END = "<!-- robocurate:quality-review:end -->"

# bad_frames.json interval fields -> breakdown mode names (reference 1.5.1, 1.7.3).
_FIELD_MODES = {"intensity_spikes": "gelsight_led_flicker", "pose_teleports_L": "pose_teleport",
                "pose_teleports_R": "pose_teleport", "ot_loss_L": "ot_loss",
                "ot_loss_R": "ot_loss"}
CONTACT_KEY = f"contact time (tactile mixed > {CONTACT_THRESHOLD:g}, either sensor)"


def mode_of_field(field: str) -> str:
    """Mode of an interval field of a bad_frames episode; unknown ``x_L``/``x_R`` -> ``x``."""
    if field in _FIELD_MODES:
        return _FIELD_MODES[field]
    return field[:-2] if field.endswith(("_L", "_R")) else field


def _is_intervals(value) -> bool:
    return isinstance(value, list) and all(
        isinstance(iv, (list, tuple)) and len(iv) == 2 for iv in value)


def mode_frames(entry: dict) -> dict[str, int]:
    """Frames per mode in one bad_frames episode: the union of that mode's [a, b] intervals."""
    by_mode: dict[str, list] = {}
    for field, value in entry.items():
        if field in ("n_frames", "duration_s", "total_bad_frames", "bad_fraction"):
            continue
        if _is_intervals(value):
            by_mode.setdefault(mode_of_field(field), []).extend(value)
    return {m: _union_length(ivs) for m, ivs in by_mode.items()}


def _union_length(intervals) -> int:
    total, end = 0, None
    for a, b in sorted((int(a), int(b)) for a, b in intervals):
        if end is None or a > end:
            total += b - a + 1
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


def _read_json(path: Path, findings: Findings, what: str):
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        findings.add(path, "unreadable_json", f"cannot read {what}: {exc}")
        return None
    if not isinstance(data, dict):
        findings.add(path, "unreadable_json", f"{what} is not a JSON object")
        return None
    return data


def load_pt(path: Path) -> dict:
    """A contact-index .pt, memory-mapped: only the tensors touched are read from disk."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        # Files saved in torch's legacy (non-zip) format cannot be memory-mapped.
        return torch.load(path, map_location="cpu", weights_only=True)


def pt_contact(path: Path, threshold: float = CONTACT_THRESHOLD) -> dict:
    """Frames, contact frames and contact-event lengths of one .pt (raises on bad input)."""
    ep = load_pt(path)
    if not isinstance(ep, dict):
        raise ValueError("not a dict of tensors")
    mixed = {}
    for side in SIDES:
        key = f"tactile_{side}_mixed"
        if key not in ep:
            raise ValueError(f"no {key}")
        value = ep[key]
        if hasattr(value, "numpy"):  # a tensor, possibly half precision
            value = value.detach().to("cpu").float().numpy()
        mixed[side] = np.asarray(value, dtype=np.float32).reshape(-1)
    frames = len(mixed[SIDES[0]])
    if any(len(v) != frames for v in mixed.values()):
        raise ValueError("tactile_left_mixed and tactile_right_mixed differ in length")
    contact = np.zeros(frames, dtype=bool)
    runs: list[float] = []
    for side in SIDES:
        on = mixed[side] > threshold  # NaN compares False: not contact
        contact |= on
        runs += [n / FPS for n in _run_lengths(on)]
    return {"frames": frames, "contact_frames": int(contact.sum()),
            "contact_frames_by_side": {s: int((mixed[s] > threshold).sum()) for s in SIDES},
            "contact_events_s": runs}


def _run_lengths(on: np.ndarray) -> list[int]:
    if not on.any():
        return []
    edges = np.diff(np.concatenate(([0], on.astype(np.int8), [0])))
    return (np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).tolist()


def pt_files(root: Path, mode: str = DEFAULT_MODE) -> list[tuple[str, str, Path]]:
    """(task, date, path) of every ``processed/<mode>/<task>/<date>/episode_*.pt``."""
    base = root / "processed" / mode
    return [(p.parent.parent.name, p.parent.name, p)
            for p in sorted(base.glob("*/*/episode_*.pt")) if p.is_file()]


def dataset_facts(root: str | os.PathLike, mode: str = DEFAULT_MODE,
                  threshold: float = CONTACT_THRESHOLD) -> dict:
    """Everything the card and the figures show, read once; bad files become findings.

    Returns ``{"root", "mode", "episodes": [{"task", "date", "key", "pt", "frames",
    "contact_frames", "contact_frames_by_side", "contact_events_s"}], "bad_frames": dict|None,
    "breakdown": dict|None, "findings": [...]}``.
    """
    root = Path(root)
    findings = Findings()
    episodes = []
    for task, date, path in pt_files(root, mode):
        try:
            info = pt_contact(path, threshold)
        except Exception as exc:  # any unreadable/malformed .pt is that file's finding
            findings.add(path, "unreadable_pt", f"cannot read contact metrics: "
                         f"{type(exc).__name__}: {exc}")
            continue
        episodes.append({"task": task, "date": date, "key": f"{date}/{path.stem}",
                         "pt": str(path), **info})
    bad = _read_json(root / BAD_FRAMES, findings, "bad_frames.json")
    if bad is not None and not isinstance(bad.get("episodes"), dict):
        findings.add(root / BAD_FRAMES, "malformed_json", "bad_frames.json has no 'episodes' map")
        bad = None
    breakdown = _read_json(root / BREAKDOWN, findings, "data_quality_breakdown.json")
    if breakdown is not None and not isinstance(breakdown.get("modes"), dict):
        findings.add(root / BREAKDOWN, "malformed_json",
                     "data_quality_breakdown.json has no 'modes' map")
        breakdown = None
    return {"root": str(root), "mode": mode, "episodes": episodes, "bad_frames": bad,
            "breakdown": breakdown, "findings": findings.to_list()}


def mode_percentages(facts: dict) -> dict[str, float]:
    """Bad-frame percentage per mode (breakdown first, else derived from bad_frames)."""
    bd = facts.get("breakdown")
    if bd:
        total = bd.get("total_frames") or 0
        out = {}
        for mode, info in bd["modes"].items():
            frames = info.get("frames", 0) if isinstance(info, dict) else 0
            out[mode] = 100.0 * frames / total if total else 0.0
        return out
    bad = facts.get("bad_frames")
    if not bad:
        return {}
    frames: dict[str, int] = {}
    total = 0
    for entry in bad["episodes"].values():
        if not isinstance(entry, dict):
            continue
        total += int(entry.get("n_frames", 0) or 0)
        for mode, n in mode_frames(entry).items():
            frames[mode] = frames.get(mode, 0) + n
    return {m: 100.0 * n / total if total else 0.0 for m, n in frames.items()}


def glance_counters(facts: dict) -> dict:
    """The "At a glance" rows, in order; ints are rendered with thousands separators."""
    eps = facts["episodes"]
    frames = sum(e["frames"] for e in eps)
    contact = sum(e["contact_frames"] for e in eps)
    events = [s for e in eps for s in e["contact_events_s"]]
    counters: dict = {
        "episodes": len(eps),
        "recording dates": len({(e["task"], e["date"]) for e in eps}),
        "frames": frames,
        "duration": f"{frames / FPS / 60:.1f} min",
        CONTACT_KEY: (f"{contact / FPS / 60:.1f} min ({100 * contact / frames:.1f}%)"
                      if frames else "0.0 min"),
        "contact events (per sensor)": (f"{len(events):,}, median {np.median(events):.2f} s"
                                        if events else "0"),
    }
    bad = facts.get("bad_frames")
    if bad:
        entries = [e for e in bad["episodes"].values() if isinstance(e, dict)]
        total = sum(int(e.get("n_frames", 0) or 0) for e in entries)
        n_bad = sum(int(e.get("total_bad_frames", 0) or 0) for e in entries)
        counters["bad frames (any mode)"] = f"{100 * n_bad / total:.2f}%" if total else "n/a"
    for mode, pct in sorted(mode_percentages(facts).items()):
        counters[f"bad frames: {mode}"] = f"{pct:.2f}%"
    return counters


def render_counter(value) -> str:
    """How robocurate.hub.card renders a counter value in its table."""
    return f"{value:,}" if isinstance(value, int) else str(value)


def card_counters_on_disk(root: str | os.PathLike) -> dict[str, str] | None:
    """The rows of README.md's generated "At a glance" table, or None when there is none."""
    path = Path(root) / "README.md"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8", errors="replace")
    if BEGIN not in text or END not in text:
        return None
    block = text[text.index(BEGIN):text.index(END)]
    rows = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 2 and cells[0] and not set(cells[0]) <= {"-"}:
            rows[cells[0]] = cells[1]
    return rows


# ---------------------------------------------------------------- review flag
def _review_changes(baseline: dict[str, float], current: dict[str, float]) -> list[str]:
    reasons = []
    for mode in sorted(current):
        now, before = current[mode], baseline.get(mode)
        if now > 0 and not before:
            reasons.append(f"new failure mode `{mode}`: {now:.2f}% of frames "
                           f"(was {'absent' if before is None else '0.00%'})")
        elif before is not None and abs(now - before) > MOVE_POINTS + 1e-9:
            reasons.append(f"`{mode}` moved {before:.2f}% -> {now:.2f}% "
                           f"({now - before:+.2f} points, more than {MOVE_POINTS} points)")
    return reasons


def _review_block(reasons: list[str], baseline: dict, current: dict) -> str:
    rows = "\n".join(f"> | {m} | {baseline[m]:.2f}% | {current.get(m, 0.0):.2f}% |"
                     if m in baseline else f"> | {m} | - | {current.get(m, 0.0):.2f}% |"
                     for m in sorted(set(baseline) | set(current)))
    lines = "\n".join(f"> - {r}" for r in reasons)
    # No timestamp: a re-run with the same figures leaves the page byte-identical.
    return (f"{REVIEW_BEGIN}\n> **Review needed** (`robocurate react card`): the bad-frame "
            f"figures changed since this page was last reviewed.\n>\n{lines}\n>\n"
            f"> | mode | reviewed | now |\n> |---|---|---|\n{rows}\n>\n"
            f"> Update this page, then delete this block (down to the end marker).\n"
            f"{REVIEW_END}\n")


def _strip_block(text: str) -> str:
    if REVIEW_BEGIN in text and REVIEW_END in text:
        start, end = text.index(REVIEW_BEGIN), text.index(REVIEW_END) + len(REVIEW_END)
        return (text[:start] + text[end:].lstrip("\n")) if start == 0 else (
            text[:start] + text[end:])
    return text


def _update_quality_doc(path: Path, block: str | None) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    new = _strip_block(text)
    if block is not None:
        new = block + ("\n" + new if new else "")
    if new != text:
        atomic_write_bytes(path, new.encode("utf-8"))


def refresh_card(root: str | os.PathLike, *, mode: str = DEFAULT_MODE,
                 facts: dict | None = None, title: str = TITLE) -> dict:
    """Refresh README.md's "At a glance" block and flag docs/quality.md when it needs review.

    Text a person wrote in README.md (and its metadata) is kept; only the generated block
    changes. Returns ``{"card", "counters", "changed", "review_needed", "review_reasons",
    "quality_doc", "state", "findings"}``.
    """
    root = Path(root)
    facts = facts if facts is not None else dataset_facts(root, mode)
    findings = Findings()
    for f in facts["findings"]:
        findings.add(f["path"], f["rule"], f["message"], item=f.get("item"),
                     severity=f.get("severity", "error"))
    counters = glance_counters(facts)
    before = card_counters_on_disk(root)
    new_card = not (root / "README.md").exists()
    card = write_card(
        root, title=title, counters=counters,
        # A new card gets the dataset's Hub config; an existing card's metadata is the owner's.
        task_categories=["robotics"] if new_card else None,
        tags=["robotics", "tactile", "gelsight", "optitrack"] if new_card else None,
        configs=[{"config_name": "all", "data_files": f"processed/{mode}/**/episode_*.pt"}]
        if new_card else None)
    changed = before != {k: render_counter(v) for k, v in counters.items()}

    state_path = root / CARD_STATE
    quality = root / QUALITY_DOC
    state = _read_json(state_path, findings, "card state") or {}
    current = {m: round(p, 4) for m, p in mode_percentages(facts).items()}
    if "baseline_mode_pct" not in state:
        baseline = current  # nothing reviewed yet: today's figures are the baseline
    else:
        baseline = dict(state["baseline_mode_pct"])
        doc_text = quality.read_text(encoding="utf-8") if quality.exists() else ""
        if state.get("review_pending") and REVIEW_BEGIN not in doc_text:
            # The person removed the review block: they reviewed the last refresh's figures.
            baseline = dict(state.get("mode_pct", baseline))
    reasons = _review_changes(baseline, current)
    if reasons:
        _update_quality_doc(quality, _review_block(reasons, baseline, current))
        findings.add(quality, "quality_review_needed", "; ".join(reasons), severity="warning")
    elif quality.exists():
        _update_quality_doc(quality, None)  # back within tolerance of what was reviewed
    new_state = {"version": 1, "counters": counters, "mode_pct": current,
                 "baseline_mode_pct": baseline, "review_pending": bool(reasons),
                 "review_reasons": reasons}
    if {k: v for k, v in state.items() if k != "updated"} != new_state:
        atomic_write_json(state_path, {**new_state, "updated": now_iso()})
    return {"card": str(card), "counters": counters, "changed": changed,
            "review_needed": bool(reasons), "review_reasons": reasons,
            "quality_doc": str(quality), "state": str(state_path),
            "findings": findings.to_list()}
