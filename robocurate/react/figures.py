"""Summary figures of a React dataset, PNGs under ``figures/dataset_figures/``.

Plots an operator would rather look at than read (seed stage 5/9, reference 1.7):

- ``failure_modes_per_date.png``: per recording date, stacked bars of the share of that date's
  frames each failure mode marks bad (from ``bad_frames.json`` intervals; modes can overlap, so
  a stack can exceed the union ``total_bad_frames``);
- ``bad_fraction_per_episode.png``: ``total_bad_frames / n_frames`` per episode, one colour
  per date, with the overall fraction as a line;
- ``contact_time_distribution.png``: left, the lengths of contact events (runs of consecutive
  frames with ``tactile_<side>_mixed > 0.4`` on one sensor, from the ``.pt`` files); right, the
  share of each episode in contact (either sensor above 0.4).

Drawn with matplotlib's Agg canvas directly (no pyplot: no global state, safe in threads);
each PNG is rendered in memory and written atomically. ``make_figures`` also returns a
markdown snippet embedding them for a flow's report artifact.

Pure library: no Prefect.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import numpy as np

from robocurate.findings import Findings
from robocurate.io.atomic import atomic_write_bytes
from robocurate.react.card import (CONTACT_THRESHOLD, FIGURES_DIR, dataset_facts, mode_frames)
from robocurate.react.layout import DEFAULT_MODE

__all__ = ["FIGURE_NAMES", "figures_markdown", "make_figures"]

FIGURE_NAMES = {
    "failure_modes_per_date": "failure_modes_per_date.png",
    "bad_fraction_per_episode": "bad_fraction_per_episode.png",
    "contact_time_distribution": "contact_time_distribution.png",
}
DPI = 100
# Inline images in the markdown (data URIs) up to this many bytes in all; beyond, paths.
INLINE_LIMIT = 1_500_000
# Okabe-Ito: distinguishable for colour-blind readers.
PALETTE = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
           "#999999"]


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    atomic_write_bytes(path, buf.getvalue())


def _bad_entries(facts: dict) -> list[tuple[str, str, dict]]:
    """(date, episode, entry) of every well-formed bad_frames episode, in key order."""
    bad = facts.get("bad_frames") or {}
    out = []
    for key, entry in sorted((bad.get("episodes") or {}).items()):
        if isinstance(entry, dict) and "/" in key and int(entry.get("n_frames", 0) or 0) > 0:
            date, episode = key.split("/", 1)
            out.append((date, episode, entry))
    return out


def plot_failure_modes_per_date(facts: dict, path: Path) -> bool:
    entries = _bad_entries(facts)
    if not entries:
        return False
    dates = sorted({d for d, _, _ in entries})
    frames = {d: 0 for d in dates}
    episodes = {d: 0 for d in dates}
    by_mode: dict[str, dict[str, int]] = {}
    for date, _, entry in entries:
        frames[date] += int(entry["n_frames"])
        episodes[date] += 1
        for mode, n in mode_frames(entry).items():
            by_mode.setdefault(mode, {d: 0 for d in dates})[date] += n
    fig = _figure(max(6.0, 0.9 * len(dates) + 3), 4.5)
    ax = fig.add_subplot()
    x = np.arange(len(dates))
    bottom = np.zeros(len(dates))
    for i, mode in enumerate(sorted(by_mode)):
        pct = np.array([100.0 * by_mode[mode][d] / frames[d] for d in dates])
        ax.bar(x, pct, bottom=bottom, color=PALETTE[i % len(PALETTE)], label=mode)
        bottom += pct
    for xi, top, d in zip(x, bottom, dates):
        ax.annotate(f"{episodes[d]} ep", (xi, top), ha="center", va="bottom", fontsize=8,
                    xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(x, dates, rotation=30 if len(dates) > 4 else 0, ha="right"
                  if len(dates) > 4 else "center")
    ax.set_ylabel("bad frames (% of the date's frames)")
    ax.set_title("Failure modes per recording date (modes may overlap)")
    if by_mode:
        ax.legend(fontsize=8, loc="upper left")
    else:
        ax.text(0.5, 0.5, "no bad frames", transform=ax.transAxes, ha="center")
    ax.set_ylim(0, max(1.0, float(bottom.max()) * 1.2))
    _save(fig, path)
    return True


def plot_bad_fraction_per_episode(facts: dict, path: Path) -> bool:
    entries = _bad_entries(facts)
    if not entries:
        return False
    dates = sorted({d for d, _, _ in entries})
    colour = {d: PALETTE[i % len(PALETTE)] for i, d in enumerate(dates)}
    pct = np.array([100.0 * int(e.get("total_bad_frames", 0) or 0) / int(e["n_frames"])
                    for _, _, e in entries])
    n = len(entries)
    fig = _figure(min(max(6.0, 0.22 * n + 2), 30.0), 4.5)
    ax = fig.add_subplot()
    ax.bar(np.arange(n), pct, color=[colour[d] for d, _, _ in entries], width=0.8)
    total = sum(int(e["n_frames"]) for _, _, e in entries)
    overall = 100.0 * sum(int(e.get("total_bad_frames", 0) or 0) for _, _, e in entries) / total
    ax.axhline(overall, color="black", linewidth=1, linestyle="--",
               label=f"all episodes: {overall:.2f}%")
    if n <= 60:  # beyond that, names are unreadable; the date colours carry the grouping
        ax.set_xticks(np.arange(n), [ep.removeprefix("episode_") for _, ep, _ in entries],
                      rotation=90, fontsize=7)
    else:
        ax.set_xticks([])
    ax.set_xlabel("episode (colour = date)")
    ax.set_ylabel("bad frames (% of episode)")
    ax.set_title("Bad-frame fraction per episode")
    from matplotlib.patches import Patch

    handles = [Patch(color=colour[d], label=d) for d in dates]
    handles.append(ax.get_lines()[0])
    ax.legend(handles=handles, fontsize=8, loc="upper left", ncols=2 if len(dates) > 6 else 1)
    ax.set_ylim(0, max(1.0, float(pct.max()) * 1.25))
    _save(fig, path)
    return True


def plot_contact_time_distribution(facts: dict, path: Path,
                                   threshold: float = CONTACT_THRESHOLD) -> bool:
    eps = [e for e in facts["episodes"] if e["frames"] > 0]
    if not eps:
        return False
    events = np.array([s for e in eps for s in e["contact_events_s"]])
    share = np.array([100.0 * e["contact_frames"] / e["frames"] for e in eps])
    fig = _figure(10.0, 4.0)
    left, right = fig.subplots(1, 2)
    if len(events):
        lo, hi = max(events.min(), 1 / 30), max(events.max(), 2 / 30)
        bins = np.geomspace(lo, hi * 1.0001, 30) if hi > lo else 10
        left.hist(events, bins=bins, color=PALETTE[4])
        left.set_xscale("log")
        from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

        # Plain seconds at 1-2-5 steps ("0.05", "0.1", "2") instead of 10^x labels.
        left.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        left.xaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
        left.xaxis.set_minor_formatter(NullFormatter())
        left.axvline(float(np.median(events)), color="black", linestyle="--", linewidth=1,
                     label=f"median {np.median(events):.2f} s ({len(events):,} events)")
        left.legend(fontsize=8)
    else:
        left.text(0.5, 0.5, "no contact events", transform=left.transAxes, ha="center")
    left.set_xlabel("contact event length (s)")
    left.set_ylabel("events")
    left.set_title(f"Contact events (mixed > {threshold:g}, per sensor)")
    right.hist(share, bins=np.linspace(0, 100, 21), color=PALETTE[2])
    right.set_xlabel("episode time in contact (%, either sensor)")
    right.set_ylabel("episodes")
    from matplotlib.ticker import MaxNLocator

    right.yaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_title(f"Contact time per episode ({len(eps)} episodes)")
    _save(fig, path)
    return True


def figures_markdown(paths: list[str | os.PathLike], *, root: str | os.PathLike | None = None,
                     inline: bool | None = None) -> str:
    """Markdown showing the figures: data-URI images (inline) or links to the files."""
    paths = [Path(p) for p in paths]
    if inline is None:
        inline = sum(p.stat().st_size for p in paths if p.exists()) <= INLINE_LIMIT
    lines = ["## Dataset figures", ""]
    for p in paths:
        label = p.stem.replace("_", " ")
        if inline:
            data = base64.b64encode(p.read_bytes()).decode("ascii")
            lines += [f"![{label}](data:image/png;base64,{data})", ""]
        else:
            shown = p.relative_to(root) if root and p.is_relative_to(root) else p
            lines += [f"![{label}]({shown.as_posix()})", f"`{p}`", ""]
    return "\n".join(lines)


def make_figures(root: str | os.PathLike, *, mode: str = DEFAULT_MODE,
                 facts: dict | None = None, inline: bool | None = None) -> dict:
    """Draw every summary figure that has data; returns ``{"paths", "markdown", "findings",
    "skipped"}`` (a figure without input data is skipped with a warning finding)."""
    root = Path(root)
    facts = facts if facts is not None else dataset_facts(root, mode)
    findings = Findings()
    for f in facts["findings"]:
        findings.add(f["path"], f["rule"], f["message"], item=f.get("item"),
                     severity=f.get("severity", "error"))
    out_dir = root / FIGURES_DIR
    plots = [("failure_modes_per_date", plot_failure_modes_per_date, "bad_frames.json episodes"),
             ("bad_fraction_per_episode", plot_bad_fraction_per_episode,
              "bad_frames.json episodes"),
             ("contact_time_distribution", plot_contact_time_distribution,
              f"readable processed/{mode}/**/episode_*.pt files")]
    paths, skipped = [], []
    for name, plot, needs in plots:
        path = out_dir / FIGURE_NAMES[name]
        if plot(facts, path):
            paths.append(str(path))
        else:
            skipped.append(name)
            findings.add(path, "figure_skipped", f"no data to draw {name}: needs {needs}",
                         severity="warning")
    return {"paths": paths, "markdown": figures_markdown(paths, root=root, inline=inline),
            "findings": findings.to_list(), "skipped": skipped}
