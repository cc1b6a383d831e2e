"""The ``robocurate`` command line: each pipeline command runs its Prefect flow."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from flows.runtime import prepare_environment


from flows.clikit import GreedyOption, _exit, _run_flow


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-json", is_flag=True, help="Machine-readable JSON log lines on stderr.")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.option("--task-runner", type=click.Choice(["threads", "processes", "dask"]),
              default=None, envvar="ROBOCURATE_TASK_RUNNER", show_envvar=True,
              help="Where per-file tasks run (default threads + robocurate's process pool).")
@click.option("--dask-address", default=None, envvar="ROBOCURATE_DASK_ADDRESS",
              show_envvar=True, help="Existing Dask scheduler for --task-runner dask.")
@click.version_option(package_name="robocurate")
def main(log_json: bool, log_level: str, task_runner: str | None,
         dask_address: str | None) -> None:
    """robocurate: raw robot-learning recordings to clean, validated, published datasets.

    Pipeline commands run as Prefect flows: on the embedded API (own PREFECT_HOME under
    ~/.cache/robocurate) when PREFECT_API_URL is unset, else on that server.
    """
    from robocurate import log

    # Flows pick their task runner when their module is imported (flows/runners.py).
    if task_runner:
        os.environ["ROBOCURATE_TASK_RUNNER"] = task_runner
    if dask_address:
        os.environ["ROBOCURATE_DASK_ADDRESS"] = dask_address
    prepare_environment()
    log.configure(json_logs=log_json, level=log_level)


# ---------------------------------------------------------------- sample data
@main.group()
def sample() -> None:
    """Generate realistic synthetic datasets in each pipeline's raw format."""


@sample.command("molmo")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--houses", default=2, show_default=True, type=click.IntRange(1))
@click.option("--files-per-house", default=2, show_default=True, type=click.IntRange(1))
@click.option("--trajs-per-file", default=6, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--splits", default="", help="Comma-separated split names (e.g. train,val) to "
              "write a dataset root instead of one split directory.")
@click.option("--steps", nargs=2, type=int, default=(40, 80), show_default=True,
              help="Range of trajectory lengths.")
@click.option("--no-video", is_flag=True, help="Skip the MP4s (statistics benchmarks).")
@click.option("--no-invalid", is_flag=True, help="Only valid trajectories and readable files.")
def sample_molmo(out, houses, files_per_house, trajs_per_file, seed, splits, steps, no_video,
                 no_invalid) -> None:
    """A MolmoSpaces-format dataset: house_*/trajectories_batch_*.h5 with episode MP4s,
    including invalid trajectories of every kind the validator detects and one unreadable
    file (see OUT/sample_manifest.json)."""
    from robocurate.samples.molmo import generate_molmo_dataset

    manifest = generate_molmo_dataset(
        out, houses=houses, files_per_house=files_per_house, trajs_per_file=trajs_per_file,
        seed=seed, splits=[s for s in splits.split(",") if s] or None, steps=tuple(steps),
        video=not no_video, with_invalid=not no_invalid, with_unreadable=not no_invalid)
    n_files = len(manifest.get("files", manifest))
    click.echo(f"wrote MolmoSpaces sample ({n_files} data files) to {out}")


@sample.command("demos")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--files", default=2, show_default=True, type=click.IntRange(1))
@click.option("--demos-per-file", default=8, show_default=True, type=click.IntRange(1))
@click.option("--schema", default="robomimic", show_default=True,
              type=click.Choice(["robomimic", "seed"]))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--tactile", is_flag=True, help="Add tactile_left/right force observations.")
@click.option("--no-images", is_flag=True, help="Leave out the camera observation.")
@click.option("--no-faults", is_flag=True, help="Only clean files.")
def sample_demos(out, files, demos_per_file, schema, seed, tactile, no_images, no_faults) -> None:
    """Demonstration HDF5 files (robomimic or the seed's layout), plus a file with every
    fault the checker detects, a broken file and one without data (see
    OUT/sample_manifest.json)."""
    from robocurate.samples.demos import generate_demos_dataset

    manifest = generate_demos_dataset(out, files=files, demos_per_file=demos_per_file,
                                      seed=seed, schema=schema, with_tactile=tactile,
                                      with_images=not no_images, with_faults=not no_faults)
    click.echo(f"wrote {len(manifest['files'])} demonstration files to {out}")


@sample.command("react")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--task", "task_name", default="motherboard", show_default=True)
@click.option("--date", default="2026-06-01", show_default=True)
@click.option("--episodes", default=4, show_default=True, type=click.IntRange(1))
@click.option("--frames", default=60, show_default=True, type=click.IntRange(2))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--no-faults", is_flag=True, help="Only clean episodes.")
@click.option("--detector-faults", is_flag=True,
              help="Add 7 episodes with LED spikes, teleports, OT freezes, a recorder stall, "
                   "an operator holding still, a late OT start and GelSight drift.")
def sample_react(out, task_name, date, episodes, frames, seed, no_faults,
                 detector_faults) -> None:
    """React raw episodes (RealSense BGR + depth, GelSight RGB, OptiTrack poses; BLOSC-LZ4
    as recorded) with faulty files labelled in OUT/sample_manifest.json, and the camera
    calibration the preview overlay uses (OUT/calibration.json)."""
    from robocurate.react.calibration import write_sample_calibration
    from robocurate.samples.react import generate_react_dataset

    manifest = generate_react_dataset(out, task=task_name, date=date, episodes=episodes,
                                      frames=frames, seed=seed, with_faults=not no_faults,
                                      detector_faults=detector_faults)
    write_sample_calibration(out)
    click.echo(f"wrote {len(manifest['files'])} React episodes to {out}")


# ---------------------------------------------------------------- MolmoSpaces
def molmo_options(fn):
    options = [
        click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path)),
        click.option("--keys", cls=GreedyOption, multiple=True,
                     default=("actions", "obs/agent/qpos"), show_default=True,
                     help="Keys to compute statistics for (one or more values)."),
        click.option("--check-visibility", nargs=2, multiple=True,
                     metavar="CAMERA OBJECT", help="Require OBJECT visible in CAMERA at t=0 "
                     "(repeatable)."),
        click.option("--min-steps", default=3, show_default=True, type=click.IntRange(1)),
        click.option("--frames-to-check", default=3, show_default=True, type=click.IntRange(0)),
        click.option("--no-video", is_flag=True, help="Skip video checks."),
        click.option("--no-overwrite", is_flag=True, help="Keep results already in the files."),
        click.option("--workers", default=os.cpu_count() or 1, show_default=True,
                     type=click.IntRange(1), help="Worker processes."),
        click.option("--strict", is_flag=True, help="Exit 1 when there is any finding."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _run_molmo(stages, root, keys, check_visibility, min_steps, frames_to_check, no_video,
               no_overwrite, workers, strict) -> None:
    from flows.molmo import molmo_postprocess
    from robocurate.molmo.options import MolmoOptions

    opts = MolmoOptions(stat_keys=list(keys), check_visibility=[tuple(p) for p in check_visibility],
                        min_steps=min_steps, frames_to_check=frames_to_check,
                        check_video=not no_video, overwrite=not no_overwrite)
    result = _run_flow(molmo_postprocess, root=str(root), options=opts, stages=list(stages),
                       workers=workers)
    click.echo(json.dumps(result["summary"], indent=2))
    click.echo(f"report: {result['report']}")
    for out in result["outputs"]:
        click.echo(f"output: {out}")
    _exit(1 if strict and result["findings"] else 0)


@main.group()
def molmo() -> None:
    """MolmoSpaces generated trajectories: repair, validate, statistics."""


@molmo.command("postprocess")
@molmo_options
def molmo_postprocess_cmd(**kw) -> None:
    """Repair video paths, validate and compute statistics, in that order."""
    _run_molmo(("repair", "validate", "stats"), **kw)


@molmo.command("repair")
@molmo_options
def molmo_repair_cmd(**kw) -> None:
    """Fill traj_i/obs/sensor_data with the episode video filenames."""
    _run_molmo(("repair",), **kw)


@molmo.command("validate")
@molmo_options
def molmo_validate_cmd(**kw) -> None:
    """Write valid_traj_mask to each file and valid_trajectory_index.json at ROOT."""
    _run_molmo(("validate",), **kw)


@molmo.command("stats")
@molmo_options
def molmo_stats_cmd(**kw) -> None:
    """Write stats/ to each file and aggregated_statistics.json at ROOT."""
    _run_molmo(("stats",), **kw)


# ---------------------------------------------------------------- demonstrations
@main.group()
def demos() -> None:
    """Robot demonstration HDF5 (robomimic, the seed's layout, robosuite raw): check,
    statistics, normaliser, train/valid split."""


_FILES = click.argument("files", nargs=-1, required=True,
                        type=click.Path(exists=True, dir_okay=False, path_type=Path))
_SCHEMA = click.option("--schema", default="auto", show_default=True,
                       type=click.Choice(["auto", "robomimic", "seed", "robosuite"]))
_WORKERS = click.option("--workers", default=os.cpu_count() or 1, show_default=True,
                        type=click.IntRange(1), help="Worker processes.")


@demos.command("check")
@_FILES
@_SCHEMA
@_WORKERS
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too.")
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where robocurate-report.json goes (default: the files' common folder).")
def demos_check_cmd(files, schema, workers, strict, report_dir) -> None:
    """Validate files; prints errors and warnings per file and demo. Exit 1 on any error."""
    from flows.demos import demos_check

    result = _run_flow(demos_check, files=[str(f) for f in files], demo_schema=schema,
                       workers=workers, report_dir=str(report_dir) if report_dir else None)
    for entry in result["files"]:
        click.echo(f"{entry['path']} [{entry['schema']}] {entry.get('demos', 0)} demos")
        for f in entry["findings"]:
            where = f" {f['item']}" if f.get("item") else ""
            click.echo(f"  {f['severity'].upper():7} {f['rule']}{where}: {f['message']}")
    s = result["summary"]
    click.echo(f"{s['errors']} errors, {s['warnings']} warnings; report: {result['report']}")
    _exit(1 if s["errors"] or (strict and s["warnings"]) else 0)


@demos.command("stats")
@_FILES
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the statistics JSON.")
@_SCHEMA
@_WORKERS
def demos_stats_cmd(files, out, schema, workers) -> None:
    """Demos, successes, lengths and per-key statistics (mean, std, min, max, q01, q99)."""
    from flows.demos import demos_stats

    result = _run_flow(demos_stats, files=[str(f) for f in files], out=str(out),
                       demo_schema=schema, workers=workers)
    click.echo(json.dumps(result["summary"], indent=2))
    click.echo(f"statistics: {result['out']}\nreport: {result['report']}")
    _exit(0)


@demos.group("normalizer")
def demos_normalizer() -> None:
    """Normalisation statistics for training (DataNormalizer)."""


@demos_normalizer.command("fit")
@_FILES
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--keys", cls=GreedyOption, multiple=True,
              help="Observation keys (default: every low-dimensional observation).")
@click.option("--mode", default="gaussian", show_default=True,
              type=click.Choice(["gaussian", "minmax"]))
@click.option("--mask", default=None, help="Fit on the demos of mask/<MASK> only (e.g. train).")
def demos_normalizer_fit_cmd(files, out, keys, mode, mask) -> None:
    """Fit normalisation statistics (exact float64 over demos and files) to a JSON file."""
    from flows.demos import demos_normalizer_fit

    result = _run_flow(demos_normalizer_fit, files=[str(f) for f in files], out=str(out),
                       keys=list(keys) or None, mode=mode, mask=mask)
    click.echo(f"normalizer ({mode}) for {len(result['obs_keys'])} observation keys and "
               f"actions: {result['out']}")
    _exit(0)


@demos.command("split")
@_FILES
@click.option("--valid-fraction", default=0.1, show_default=True,
              type=click.FloatRange(0, 1, max_open=True))
@click.option("--seed", default=0, show_default=True, type=int)
def demos_split_cmd(files, valid_fraction, seed) -> None:
    """Write mask/train and mask/valid (a crash-safe addition to each file)."""
    from flows.demos import demos_split

    result = _run_flow(demos_split, files=[str(f) for f in files],
                       valid_fraction=valid_fraction, seed=seed)
    click.echo(json.dumps(result["summary"], indent=2))
    click.echo(f"report: {result['report']}")
    _exit(0)


# ---------------------------------------------------------------- publishing
@main.command("push")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--repo-id", required=True, help="OWNER/NAME on the Hub.")
@click.option("--repo-type", default="dataset", show_default=True,
              type=click.Choice(["dataset", "model"]))
@click.option("--revision", default="main", show_default=True)
@click.option("--private", is_flag=True)
@click.option("--path-in-repo", default=".", show_default=True)
@click.option("--include", multiple=True, help="Glob of files to send (repeatable).")
@click.option("--exclude", multiple=True, help="Glob of files to leave out (repeatable).")
@click.option("--preflight", "preflight_kind", default="generic", show_default=True,
              help="Family of preflight checks: generic, molmo, demos, react, owa.")
@click.option("--approve", is_flag=True, help="Approve the upload (no prompt).")
@click.option("--dry-run", is_flag=True, help="Preflight and upload plan only; sends nothing.")
@click.option("--commit-message", default="Upload with robocurate", show_default=True)
@click.option("--token-block", help="Name of a Prefect Secret block holding the HF token "
              "(default: HF_TOKEN or the huggingface_hub login).")
def push_cmd(folder, repo_id, repo_type, revision, private, path_in_repo, include, exclude,
             preflight_kind, approve, dry_run, commit_message, token_block) -> None:
    """Publish FOLDER to the Hugging Face Hub (HF_ENDPOINT) after preflight and approval."""
    from flows.publish import PreflightFailed, preflight_markdown, publish
    from robocurate.hub.push import PushError

    params = dict(folder=str(folder), repo_id=repo_id, repo_type=repo_type, revision=revision,
                  private=private, path_in_repo=path_in_repo, include=list(include),
                  exclude=list(exclude), preflight=preflight_kind,
                  commit_message=commit_message, token_block=token_block)
    try:
        if not approve and not dry_run and sys.stdin.isatty():
            plan = _run_flow(publish, **params, dry_run=True)
            click.echo(preflight_markdown(plan["preflight"], plan["plan"]))
            approve = click.confirm(f"Publish to {repo_id}?", default=False)
        result = _run_flow(publish, **params, approve=approve, dry_run=dry_run)
    except PreflightFailed as exc:
        click.echo(f"robocurate: {exc}", err=True)
        _exit(1)
    except PushError as exc:
        click.echo(f"robocurate: push failed: {exc}", err=True)
        _exit(1)
    if result["status"] == "dry-run":
        click.echo(preflight_markdown(result["preflight"], result["plan"]))
        _exit(0)
    if result["status"] != "pushed":
        click.echo(f"robocurate: nothing sent: {result['reason']}", err=True)
        _exit(1)
    r = result["receipt"]
    click.echo(f"pushed {r['sent']['files']} files ({r['sent']['bytes']:,} bytes) in "
               f"{len(r['commits'])} commits; {len(r['skipped'])} already present")
    click.echo(f"receipt: {result['receipt_path']}")
    _exit(0)


# ---------------------------------------------------------------- demo
@main.command()
@click.option("--out", default="demo-output", show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--workers", default=os.cpu_count() or 1, show_default=True, type=click.IntRange(1))
def demo(out: Path, workers: int) -> None:
    """Generate sample data for every pipeline and run the flows on it."""
    from flows.demo import run_demo

    from flows.observe import route_logs_to_prefect

    route_logs_to_prefect(json_console=click.get_current_context().find_root().params["log_json"])
    for line in run_demo(out, workers=workers):
        click.echo(line)
    _exit(0)


# Pipelines with their own command modules.
from flows.cli_deploy import deploy  # noqa: E402
from flows.cli_droid import droid, sample_droid  # noqa: E402
from flows.cli_react import react  # noqa: E402
from flows.cli_owa import owa, sample_owa  # noqa: E402

main.add_command(deploy)
main.add_command(react)
main.add_command(owa)
main.add_command(droid)
sample.add_command(sample_owa, "owa")
sample.add_command(sample_droid, "droid")


if __name__ == "__main__":
    main()
