"""``robocurate droid ...`` and ``robocurate sample droid``."""

from __future__ import annotations

from pathlib import Path

import click

from flows.clikit import _exit, _run_flow


@click.group("droid")
def droid() -> None:
    """DROID training data: contact tracks, 2D projections, 1 mm flow, extrinsics, quality
    and depth video from raw DROID episodes, with batched publishing."""


@droid.command("tracks")
@click.argument("raw_root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_root", type=click.Path(file_okay=False, path_type=Path))
@click.option("--mode", default="metadata", show_default=True,
              type=click.Choice(["metadata", "full"]),
              help="metadata: everything but depth (CPU); full: plus depth video per camera.")
@click.option("--episodes", default=10, show_default=True, type=int,
              help="How many episodes (best calibrated first, labs interleaved); -1 = all.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1),
              help="Worker processes for the per-episode work.")
@click.option("--gpus", default=1, show_default=True, type=click.IntRange(1),
              help="GPUs of this host: in-process depth tasks use one each.")
@click.option("--gpu-pool", default=None, envvar="ROBOCURATE_GPU_POOL",
              help="Full mode: run each episode's depth as a run of the droid-depth "
                   "deployment on this work pool.")
@click.option("--intrinsics-source", default="conf", show_default=True,
              type=click.Choice(["zed", "conf", "table"]),
              help="zed: ZED SDK on the SVOs (ZED container); conf: factory SN<serial>.conf "
                   "files rectified with OpenCV (--calib-dir); table: JSON file "
                   "(--intrinsics-table).")
@click.option("--intrinsics-table", type=click.Path(exists=True, dir_okay=False),
              help="JSON: serial -> {fx, fy, cx, cy, width, height, k1, k2, p1, p2, k3}.")
@click.option("--calib-dir", type=click.Path(exists=True, file_okay=False),
              help="Folder of factory calibration files SN<serial>.conf.")
@click.option("--extrinsics-source", default="h5", show_default=True,
              type=click.Choice(["h5", "superset"]),
              help="h5: observation/camera_extrinsics; superset: --superset FILE.")
@click.option("--superset", type=click.Path(exists=True, dir_okay=False),
              help="cam2base_extrinsic_superset.json (also used to order episodes).")
@click.option("--points-per-finger", default=480, show_default=True, type=click.IntRange(1))
@click.option("--step-mm", default=1.0, show_default=True, type=click.FloatRange(min=0,
              min_open=True), help="Arc-length step of the normalized flow.")
@click.option("--min-depth", default=0.1, show_default=True, type=click.FloatRange(min=0),
              help="Track points closer to a camera than this (m) project to NaN.")
@click.option("--depth-source", default="stereo", show_default=True,
              type=click.Choice(["zed", "stereo"]), help="Full mode: ZED SDK or stereo SGBM.")
@click.option("--publish-full", metavar="REPO", help="Hub dataset repo for everything.")
@click.option("--publish-metadata", metavar="REPO",
              help="Hub dataset repo for everything but depth videos.")
@click.option("--skip-hub-check", is_flag=True,
              help="Process episodes even when they are already on the Hub.")
@click.option("--publish-interval", default=600.0, show_default=True,
              type=click.FloatRange(min=0), help="Seconds between published batches.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of the contact-point sampling (same seed, same points).")
def droid_tracks_cmd(raw_root, out_root, **kw) -> None:
    """Process DROID raw episodes under RAW_ROOT into OUT_ROOT/<lab>/<outcome>/<date>/<ts>/.
    Exit 1 when an episode failed."""
    from flows.droid import droid_tracks

    kw = {k: (str(v) if isinstance(v, Path) else v) for k, v in kw.items()}
    kw["hub_endpoint"] = None  # HF_ENDPOINT, as for every huggingface_hub client
    result = _run_flow(droid_tracks, raw_root=str(raw_root), out_root=str(out_root), **kw)
    for ep in result["episodes"]:
        where = ep.get("output") or ep.get("staging") or ""
        click.echo(f"{ep['status']:7} {ep['rel']} {where}")
    s = result["summary"]
    click.echo(f"{s['episodes ok']} ok, {s['episodes failed']} failed, "
               f"{s['skipped (on the Hub)']} skipped, {s['published batches']} batches "
               f"published; {result['findings']} findings; report: {result['report']}")
    _exit(1 if s["episodes failed"] else 0)


@click.command("droid")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--episodes", default=4, show_default=True, type=click.IntRange(1),
              help="Clean episodes (one of each fault is added unless --no-faults).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--steps", nargs=2, type=int, default=(60, 120), show_default=True,
              help="Range of episode lengths (15 Hz steps).")
@click.option("--video", is_flag=True, help="Also write side-by-side stereo MP4s.")
@click.option("--video-frames", type=click.IntRange(1),
              help="Frames per stereo MP4 (default: one per step).")
@click.option("--no-faults", is_flag=True, help="Only clean episodes.")
def sample_droid(out, episodes, seed, steps, video, video_frames, no_faults) -> None:
    """DROID raw episodes in the real layout (trajectory.h5, metadata_*.json, factory
    calibration files, optional stereo MP4s) plus labelled faulty episodes (see
    OUT/sample_manifest.json)."""
    from robocurate.samples.droid import generate_droid_episodes

    m = generate_droid_episodes(out, episodes=episodes, seed=seed, steps=tuple(steps),
                                with_video=video, video_frames=video_frames,
                                faults=not no_faults)
    click.echo(f"wrote {len(m['episodes'])} DROID episodes to {out} "
               f"(calibration: {m['calib_dir']})")
