"""``robocurate react ...``: the React curation flow and each of its stages."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from flows.clikit import _exit, _run_flow


@click.group("react")
def react() -> None:
    """React tactile-visual recordings: integrity, compression, contact indexing, failure
    detection, metadata, previews, gallery, event clips, dataset card, publishing."""


def _sides(ctx, param, value):
    if not value:
        return None
    sides = [s.strip() for s in value.split(",") if s.strip()]
    bad = set(sides) - {"left", "right"}
    if bad or not sides:
        raise click.BadParameter("a comma-separated subset of left,right")
    return sides


def react_options(fn):
    options = [
        click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path)),
        click.option("--task", "task_name", required=True, help="Task folder under data/."),
        click.option("--date", required=True, help="Date folder (YYYY-MM-DD)."),
        click.option("--level", default=4, show_default=True, type=click.IntRange(1, 9),
                     help="GZIP level for compression."),
        click.option("--workers", default=os.cpu_count() or 1, show_default=True,
                     type=click.IntRange(1), help="Compression threads per file."),
        click.option("--device", default="auto", show_default=True,
                     help="Contact-index device: auto (CUDA when present), cpu, cuda[:N]."),
        click.option("--active-sensors", callback=_sides, default=None,
                     help="Sides recorded (left,right); default: sides with OptiTrack data."),
        click.option("--gelsight-lag", default=0, show_default=True, type=click.IntRange(0),
                     help="Frames GelSight lags the cameras (early recordings: 15)."),
        click.option("--mode", default="mode1_v1", show_default=True,
                     help="processed/<mode>/ output folder."),
        click.option("--no-projection", is_flag=True,
                     help="Previews without the sensor projection overlay."),
        click.option("--min-s", default=1.0, show_default=True, type=float,
                     help="Shortest event that gets a clip (s)."),
        click.option("--max-s", default=5.0, show_default=True, type=float,
                     help="Longest event that gets a clip (s)."),
        click.option("--gpu-pool", default=None, envvar="ROBOCURATE_GPU_POOL",
                     help="Run contact indexing as a deployment run on this work pool."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _run_react(stages, root, task_name, date, no_projection=False, repo_id=None,
               approve=False, dry_run=False, **kw) -> None:
    from flows.publish import PreflightFailed
    from flows.react import parse_stages, react_curate
    from robocurate.hub.push import PushError

    try:
        stages = parse_stages(stages)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--stages") from None
    try:
        result = _run_flow(react_curate, root=str(root), task=task_name, date=date,
                           stages=stages, projection=not no_projection, repo_id=repo_id,
                           approve=approve, dry_run=dry_run, **kw)
    except PreflightFailed as exc:
        click.echo(f"robocurate: {exc}", err=True)
        _exit(1)
    except PushError as exc:
        click.echo(f"robocurate: push failed: {exc}", err=True)
        _exit(1)
    click.echo(json.dumps(result["summary"], indent=2))
    click.echo(f"report: {result['report']}")
    _exit(0)


@react.command("curate")
@react_options
@click.option("--stages", default="all", show_default=True,
              help="Comma-separated, run in pipeline order: all, integrity, compress, "
                   "contact-index, detect, metadata, preview, gallery, clips, card, publish.")
@click.option("--repo-id", default=None, help="Hub repository for the publish stage.")
@click.option("--approve", is_flag=True, help="Publish without an interactive approval.")
@click.option("--dry-run", is_flag=True, help="Publish stage: preflight and plan only.")
def react_curate_cmd(stages, **kw) -> None:
    """Run the stages in order; corrupt files are renamed *.h5.corrupt and left out."""
    _run_react(stages, **kw)


def _stage_command(name: str, stages: str, doc: str):
    @react.command(name, help=doc)
    @react_options
    def command(**kw) -> None:
        _run_react(stages, **kw)

    return command


# Each stage as its own command; integrity always runs first (later stages read only
# files that pass it).
_stage_command("integrity", "integrity",
               "Every episode opens and every modality has the same frame count.")
_stage_command("compress", "compress",
               "Rewrite frame datasets as GZIP+shuffle, verified bit-exact before an atomic "
               "rename.")
_stage_command("contact-index", "contact-index",
               "Per episode a .pt: thumbnails, poses, contact metrics, _contact_meta.")
_stage_command("detect", "detect",
               "LED spikes, pose teleports, OptiTrack freezes (diagnosed): bad_frames.json, "
               "freeze_intervals.json, data_quality_breakdown.json / report.csv.")
_stage_command("metadata", "metadata", "Update tasks.json for this date.")
_stage_command("preview", "preview", "Preview MP4 per episode (1280x480 panel, overlay).")
_stage_command("gallery", "gallery", "Gallery GIF per episode (60 frames, <= 4 MB).")
_stage_command("clips", "clips", "A short GIF per freeze, teleport and spike event.")
_stage_command("card", "card", "Refresh the README's At a glance counters and figures.")


@react.command("publish")
@react_options
@click.option("--repo-id", required=True, help="Hub repository (org/name).")
@click.option("--approve", is_flag=True, help="Publish without an interactive approval.")
@click.option("--dry-run", is_flag=True, help="Preflight and plan only; nothing is sent.")
def react_publish_cmd(**kw) -> None:
    """The seed's preflight checks, then the gated push flow (approval, upload, receipt)."""
    _run_react("publish", **kw)


@react.command("verdict")
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("episode")
@click.argument("event")
@click.argument("verdict", type=click.Choice(["keep", "cut", "merge", "clear"]))
def react_verdict_cmd(root, episode, event, verdict) -> None:
    """Record an operator's call on a freeze event (EPISODE as <date>/episode_NNN, EVENT its
    id in freeze_intervals.json); kept across re-runs of detect."""
    from robocurate.react import quality

    path = root / quality.FIGURES_DIR / quality.FREEZE_NAME
    try:
        ev = quality.set_verdict(path, episode, event, None if verdict == "clear" else verdict)
    except (KeyError, ValueError) as exc:
        click.echo(f"robocurate: error: {exc.args[0] if exc.args else exc}", err=True)
        _exit(2)
    click.echo(f"{episode} {ev['id']}: manual_verdict = {ev['manual_verdict']}")
    _exit(0)
