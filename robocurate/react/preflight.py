"""Preflight checks for publishing a React dataset (seed stage 10, plus two of our own).

Registered as kind ``react`` with ``robocurate.hub.preflight``. ``folder`` is the dataset ROOT
(``data/``, ``processed/<mode>/``, ``figures/``, ``tasks.json``, ``README.md``). The checks
split the seed's list so that each fails on its own and names what to re-run:

1. ``react_h5_has_pt``: every ``data/<task>/<date>/episode_*.h5`` has a readable
   ``processed/<mode>/<task>/<date>/episode_*.pt``, and no ``.pt`` is left without its
   recording (it would publish an episode whose source is gone or quarantined);
2. ``react_pt_newer_than_h5``: each ``.pt`` is non-empty and its mtime is not older than its
   own recording's (a recording rewritten after indexing, e.g. recompressed or replaced,
   makes the index stale; a new recording of another episode does not);
3. ``react_per_date_notes``: ``tasks.json:tasks.<task>.per_date_notes.<date>`` is a non-empty
   object for every task/date with recordings;
4. ``react_bad_frames_complete``: ``bad_frames.json:episodes.<date>/episode_NNN`` exists for
   every recording, and its ``n_frames`` equals the ``.pt``'s frame count (else it was
   computed from an older index);
5. ``react_gallery_gifs``: ``figures/episode_previews/<task>/<date>/episode_NNN.gif`` exists
   and is a GIF;
6. ``react_breakdown_current``: ``data_quality_breakdown.json``'s ``n_episodes``,
   ``total_frames`` and per-mode ``frames``/``pct`` equal what ``bad_frames.json`` gives now
   (and check 4 ties ``bad_frames.json`` to the recordings);
7. ``react_no_corrupt_files``: no quarantined ``*.corrupt`` file is among the files to publish;
8. ``react_card_current``: README.md's "At a glance" rows equal the counters computed from the
   data now (``robocurate.react.card``).

The processed mode is ``mode1_v1`` unless ``processed/`` holds exactly one other mode.

Pure library: no Prefect.
"""

from __future__ import annotations

import json
from pathlib import Path

from robocurate.hub.preflight import CheckResult, register
from robocurate.react import card as react_card
from robocurate.react.layout import DEFAULT_MODE, episode_key, pt_path

__all__ = ["CHECKS", "dataset_mode", "recordings"]

CHECKS = ("react_h5_has_pt", "react_pt_newer_than_h5", "react_per_date_notes",
          "react_bad_frames_complete", "react_gallery_gifs", "react_breakdown_current",
          "react_no_corrupt_files", "react_card_current")
GALLERY = Path("figures") / "episode_previews"
PCT_TOLERANCE = 0.01  # breakdown pct may be rounded (to 2 dp or finer)


def dataset_mode(folder: Path) -> str:
    base = folder / "processed"
    modes = [p.name for p in base.iterdir() if p.is_dir()] if base.is_dir() else []
    if DEFAULT_MODE in modes or len(modes) != 1:
        return DEFAULT_MODE
    return modes[0]


def recordings(folder: Path) -> list[tuple[str, str, Path]]:
    """(task, date, h5) of every raw recording (quarantined ``*.h5.corrupt`` excluded)."""
    return [(p.parent.parent.name, p.parent.name, p)
            for p in sorted((folder / "data").glob("*/*/episode_*.h5")) if p.is_file()]


def _rel(folder: Path, p: Path) -> str:
    try:
        return p.relative_to(folder).as_posix()
    except ValueError:
        return str(p)


def _commands(folder: Path, pairs, stage: str) -> str:
    cmds = [f"`robocurate react curate {folder} --task {t} --date {d} --stages {stage}`"
            for t, d in sorted(set(pairs))]
    return "run " + " and ".join(cmds[:5]) + (f" (and {len(cmds) - 5} more)" if len(cmds) > 5
                                              else "")


# The .pt files and JSONs are read once per preflight run, not once per check: facts are
# memoised on the (path, size, mtime) of everything they are computed from.
_FACTS_CACHE: dict = {}


def _facts(folder: Path) -> dict:
    mode = dataset_mode(folder)
    inputs = [p for _, _, p in react_card.pt_files(folder, mode)]
    inputs += [folder / react_card.BAD_FRAMES, folder / react_card.BREAKDOWN]
    key = (str(folder), mode, tuple(
        (str(p), st.st_size, st.st_mtime_ns) for p in inputs
        if (st := p.stat() if p.exists() else None) is not None))
    if _FACTS_CACHE.get("key") != key:
        _FACTS_CACHE.clear()
        _FACTS_CACHE.update(key=key, facts=react_card.dataset_facts(folder, mode))
    return _FACTS_CACHE["facts"]


def _pt_frames(folder: Path) -> tuple[dict[str, int], dict[str, str]]:
    """Frames per readable .pt (by path) and the reason per unreadable one."""
    facts = _facts(folder)
    frames = {e["pt"]: e["frames"] for e in facts["episodes"]}
    broken = {f["path"]: f["message"] for f in facts["findings"] if f["rule"] == "unreadable_pt"}
    return frames, broken


def _no_recordings(name: str, folder: Path) -> CheckResult:
    return CheckResult(name, False, f"no recordings: nothing matches "
                       f"{folder}/data/<task>/<date>/episode_*.h5", [str(folder / "data")])


# ---------------------------------------------------------------- 1. every .h5 has its .pt
@register("react", "react_h5_has_pt")
def h5_has_pt(folder: Path, files: list[Path]) -> CheckResult:
    name = "react_h5_has_pt"
    recs = recordings(folder)
    if not recs:
        return _no_recordings(name, folder)
    mode = dataset_mode(folder)
    frames, broken = _pt_frames(folder)
    bad, pairs = [], []
    for task, date, h5 in recs:
        pt = pt_path(folder, task, date, h5.name, mode)
        if not pt.is_file():
            bad.append(f"{_rel(folder, pt)} (missing; recording {_rel(folder, h5)})")
        elif str(pt) in broken:
            bad.append(f"{_rel(folder, pt)} (unreadable: {broken[str(pt)]})")
        else:
            continue
        pairs.append((task, date))
    wanted = {str(pt_path(folder, t, d, h5.name, mode)) for t, d, h5 in recs}
    orphans = [f"{_rel(folder, p)} (no recording data/{t}/{d}/{p.stem}.h5: delete the .pt or "
               f"restore the recording)" for t, d, p in react_card.pt_files(folder, mode)
               if str(p) not in wanted]
    if bad or orphans:
        parts = []
        if bad:
            parts.append(f"{len(bad)} of {len(recs)} recordings have no readable .pt: "
                         f"{_commands(folder, pairs, 'contact-index')}")
        if orphans:
            parts.append(f"{len(orphans)} .pt files have no recording")
        return CheckResult(name, False, "; ".join(parts), bad + orphans)
    return CheckResult(name, True, f"{len(recs)} recordings, each with its .pt ({mode})")


# ---------------------------------------------------------------- 2. .pt newer than recording
@register("react", "react_pt_newer_than_h5")
def pt_newer_than_h5(folder: Path, files: list[Path]) -> CheckResult:
    name = "react_pt_newer_than_h5"
    recs = recordings(folder)
    if not recs:
        return _no_recordings(name, folder)
    mode = dataset_mode(folder)
    stale, pairs = [], []
    for task, date, h5 in recs:
        pt = pt_path(folder, task, date, h5.name, mode)
        if not pt.is_file():
            continue  # react_h5_has_pt reports it
        pst, hst = pt.stat(), h5.stat()
        if pst.st_size == 0:
            stale.append(f"{_rel(folder, pt)} (empty file)")
        elif pst.st_mtime_ns < hst.st_mtime_ns:
            stale.append(f"{_rel(folder, pt)} (older than {_rel(folder, h5)} by "
                         f"{(hst.st_mtime_ns - pst.st_mtime_ns) / 1e9:.1f} s)")
        else:
            continue
        pairs.append((task, date))
    if stale:
        return CheckResult(name, False, f"{len(stale)} .pt files predate their recording: "
                           f"{_commands(folder, pairs, 'contact-index')}", stale)
    return CheckResult(name, True, "every .pt was written after its recording")


# ---------------------------------------------------------------- 3. per-date notes
@register("react", "react_per_date_notes")
def per_date_notes(folder: Path, files: list[Path]) -> CheckResult:
    name = "react_per_date_notes"
    recs = recordings(folder)
    if not recs:
        return _no_recordings(name, folder)
    path = folder / "tasks.json"
    pairs = sorted({(t, d) for t, d, _ in recs})
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return CheckResult(name, False, f"no tasks.json: {_commands(folder, pairs, 'metadata')}",
                           [f"{_rel(folder, path)} (missing)"])
    except (OSError, ValueError) as exc:
        return CheckResult(name, False, f"tasks.json is not readable JSON ({exc}): fix it by "
                           f"hand or {_commands(folder, pairs, 'metadata')}",
                           [f"{_rel(folder, path)} (invalid)"])
    missing = []
    for task, date in pairs:
        note = (((tasks.get("tasks") or {}).get(task) or {}).get("per_date_notes") or {}).get(
            date) if isinstance(tasks, dict) else None
        if not isinstance(note, dict) or not note:
            missing.append((task, date))
    if missing:
        return CheckResult(name, False, f"{len(missing)} task/dates have no per-date notes: "
                           f"{_commands(folder, missing, 'metadata')}",
                           [f"{_rel(folder, path)}: tasks.{t}.per_date_notes.{d} (missing)"
                            for t, d in missing])
    return CheckResult(name, True, f"per-date notes for {len(pairs)} task/dates")


# ---------------------------------------------------------------- 4. bad_frames.json complete
def _load(folder: Path, rel: Path, pairs, stage: str, name: str, need: str):
    path = folder / rel
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, CheckResult(name, False, f"no {rel.name}: {_commands(folder, pairs, stage)}",
                                 [f"{_rel(folder, path)} (missing)"])
    except (OSError, ValueError) as exc:
        return None, CheckResult(name, False, f"{rel.name} is not readable JSON ({exc}): "
                                 f"{_commands(folder, pairs, stage)}",
                                 [f"{_rel(folder, path)} (invalid)"])
    if not isinstance(data, dict) or not isinstance(data.get(need), dict):
        return None, CheckResult(name, False, f"{rel.name} has no '{need}' map: "
                                 f"{_commands(folder, pairs, stage)}",
                                 [f"{_rel(folder, path)} (malformed)"])
    return data, None


@register("react", "react_bad_frames_complete")
def bad_frames_complete(folder: Path, files: list[Path]) -> CheckResult:
    name = "react_bad_frames_complete"
    recs = recordings(folder)
    if not recs:
        return _no_recordings(name, folder)
    all_pairs = {(t, d) for t, d, _ in recs}
    bad, failed = _load(folder, react_card.BAD_FRAMES, all_pairs, "detect", name, "episodes")
    if failed:
        return failed
    mode = dataset_mode(folder)
    frames, _ = _pt_frames(folder)
    rel = _rel(folder, folder / react_card.BAD_FRAMES)
    problems, pairs = [], []
    for task, date, h5 in recs:
        key = episode_key(h5)
        entry = bad["episodes"].get(key)
        n_pt = frames.get(str(pt_path(folder, task, date, h5.name, mode)))
        if not isinstance(entry, dict):
            problems.append(f"{rel}: episodes.{key} (missing)")
        elif n_pt is not None and entry.get("n_frames") != n_pt:
            problems.append(f"{rel}: episodes.{key} (n_frames {entry.get('n_frames')} but the "
                            f".pt has {n_pt} frames)")
        else:
            continue
        pairs.append((task, date))
    if problems:
        return CheckResult(name, False, f"{len(problems)} recordings missing or stale in "
                           f"bad_frames.json: {_commands(folder, pairs, 'detect')}", problems)
    return CheckResult(name, True, f"{len(recs)} recordings in bad_frames.json")


# ---------------------------------------------------------------- 5. gallery GIFs
@register("react", "react_gallery_gifs")
def gallery_gifs(folder: Path, files: list[Path]) -> CheckResult:
    name = "react_gallery_gifs"
    recs = recordings(folder)
    if not recs:
        return _no_recordings(name, folder)
    bad, pairs = [], []
    for task, date, h5 in recs:
        gif = folder / GALLERY / task / date / f"{h5.stem}.gif"
        if not gif.is_file():
            bad.append(f"{_rel(folder, gif)} (missing)")
        else:
            with open(gif, "rb") as f:
                if f.read(6) in (b"GIF87a", b"GIF89a"):
                    continue
            bad.append(f"{_rel(folder, gif)} (not a GIF)")
        pairs.append((task, date))
    if bad:
        return CheckResult(name, False, f"{len(bad)} episodes have no gallery GIF: "
                           f"{_commands(folder, pairs, 'gallery')}", bad)
    return CheckResult(name, True, f"{len(recs)} gallery GIFs")


# ---------------------------------------------------------------- 6. breakdown current
@register("react", "react_breakdown_current")
def breakdown_current(folder: Path, files: list[Path]) -> CheckResult:
    name = "react_breakdown_current"
    recs = recordings(folder)
    if not recs:
        return _no_recordings(name, folder)
    pairs = {(t, d) for t, d, _ in recs}
    bad, failed = _load(folder, react_card.BAD_FRAMES, pairs, "detect", name, "episodes")
    if failed:
        return CheckResult(name, False, "cannot verify the breakdown: " + failed.reason,
                           failed.paths)
    bd, failed = _load(folder, react_card.BREAKDOWN, pairs, "detect", name, "modes")
    if failed:
        return failed
    entries = [e for e in bad["episodes"].values() if isinstance(e, dict)]
    total = sum(int(e.get("n_frames", 0) or 0) for e in entries)
    derived: dict[str, int] = {}
    for e in entries:
        for m, n in react_card.mode_frames(e).items():
            derived[m] = derived.get(m, 0) + n
    rel = _rel(folder, folder / react_card.BREAKDOWN)
    diffs = []
    if bd.get("n_episodes") != len(entries):
        diffs.append(f"{rel}: n_episodes {bd.get('n_episodes')}, bad_frames.json has "
                     f"{len(entries)}")
    if bd.get("total_frames") != total:
        diffs.append(f"{rel}: total_frames {bd.get('total_frames')}, bad_frames.json has {total}")
    modes = bd["modes"]
    # Modes the breakdown has but bad_frames.json cannot give (no interval field) are its own.
    for m in sorted(derived):
        info = modes.get(m)
        if not isinstance(info, dict):
            if derived[m]:
                diffs.append(f"{rel}: modes.{m} missing ({derived[m]} frames in bad_frames.json)")
            continue
        if info.get("frames") != derived[m]:
            diffs.append(f"{rel}: modes.{m}.frames {info.get('frames')}, bad_frames.json gives "
                         f"{derived[m]}")
        elif isinstance(info.get("pct"), (int, float)) and total and abs(
                info["pct"] - 100.0 * derived[m] / total) > PCT_TOLERANCE:
            diffs.append(f"{rel}: modes.{m}.pct {info['pct']}, now "
                         f"{100.0 * derived[m] / total:.4f}")
    summary = bad.get("summary")
    if isinstance(summary, dict):
        brel = _rel(folder, folder / react_card.BAD_FRAMES)
        for k, want in (("n_episodes", len(entries)), ("total_frames", total)):
            if k in summary and summary[k] != want:
                diffs.append(f"{brel}: summary.{k} {summary[k]}, its episodes give {want}")
    if diffs:
        return CheckResult(name, False, f"the breakdown does not reflect the current totals: "
                           f"{_commands(folder, pairs, 'detect')}", diffs)
    return CheckResult(name, True, f"breakdown matches bad_frames.json ({len(entries)} episodes,"
                       f" {total:,} frames)")


# ---------------------------------------------------------------- 7. no .corrupt published
@register("react", "react_no_corrupt_files")
def no_corrupt_files(folder: Path, files: list[Path]) -> CheckResult:
    name = "react_no_corrupt_files"
    corrupt = [_rel(folder, p) for p in files if p.name.endswith(".corrupt")]
    if corrupt:
        return CheckResult(name, False, f"{len(corrupt)} quarantined .corrupt files would be "
                           f"published: move them out of {folder} or publish with "
                           f"--exclude '*.corrupt'", corrupt)
    return CheckResult(name, True, "no quarantined file among the files to publish")


# ---------------------------------------------------------------- 8. card current
@register("react", "react_card_current")
def card_current(folder: Path, files: list[Path]) -> CheckResult:
    name = "react_card_current"
    recs = recordings(folder)
    pairs = sorted({(t, d) for t, d, _ in recs})[-1:] or [("TASK", "DATE")]
    fix = _commands(folder, pairs, "card")
    on_card = react_card.card_counters_on_disk(folder)
    card = _rel(folder, folder / "README.md")
    if on_card is None:
        return CheckResult(name, False, f"README.md has no generated \"At a glance\" block: {fix}",
                           [f"{card} (no At a glance block)"])
    want = {k: react_card.render_counter(v)
            for k, v in react_card.glance_counters(_facts(folder)).items()}
    diffs = [f"{card}: {k}: card says {on_card.get(k, '(absent)')!r}, data gives "
             f"{want.get(k, '(absent)')!r}" for k in list(want) + [k for k in on_card
                                                                    if k not in want]
             if on_card.get(k) != want.get(k)]
    if diffs:
        return CheckResult(name, False, f"the card's counters are out of date: {fix}", diffs)
    return CheckResult(name, True, f"{len(want)} card counters match the data")
