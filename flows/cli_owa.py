"""``robocurate owa ...`` and ``robocurate sample owa``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from flows.clikit import _exit, _run_flow


@click.group("owa")
def owa() -> None:
    """Open World Agents desktop recordings (OWAMcap): event and binned datasets."""


@owa.command("events")
@click.option("--train-dir", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Directory of *.mcap recordings (not recursive).")
@click.option("--test-dir", default=None,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Explicit test recordings; overrides the random split.")
@click.option("--output-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where the DatasetDict is saved (replaced atomically).")
@click.option("--rate", "rates", multiple=True, metavar="TOPIC=HZ",
              help="Per-topic rate limit, repeatable. Default: mouse=60 screen=20.")
@click.option("--keep-topic", "--keep_topic", "keep_topics", multiple=True, metavar="TOPIC",
              help="Topic to keep, repeatable. Default: screen keyboard mouse.")
@click.option("--test-percent", "--test_percent", default=0.2, show_default=True,
              type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Share of files drawn for test when there is no --test-dir.")
@click.option("--seed", default=0, show_default=True, type=int, help="Split seed.")
@click.option("--workers", default=os.cpu_count() or 1, show_default=True,
              type=click.IntRange(1), help="Worker processes reading recordings.")
def owa_events_cmd(train_dir, test_dir, output_dir, rates, keep_topics, test_percent, seed,
                   workers) -> None:
    """MCAP recordings -> event dataset (episode_path, topic, timestamp_ns, message_type,
    mcap_message), every OWA schema generation normalised to the current one."""
    from flows.owa import owa_events
    from robocurate.owa.events import DEFAULT_RATES, parse_rates, split_files

    try:
        rate_map = parse_rates(rates) if rates else dict(DEFAULT_RATES)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--rate") from None
    try:  # nothing to read or an impossible split: say so before starting a flow run
        split_files(train_dir, test_dir, test_percent=test_percent, seed=seed)
    except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
        click.echo(f"robocurate: error: {exc}", err=True)
        _exit(2)
    result = _run_flow(owa_events, train_dir=str(train_dir),
                       test_dir=str(test_dir) if test_dir else None,
                       output_dir=str(output_dir), rates=rate_map,
                       keep_topics=list(keep_topics) or None, test_percent=test_percent,
                       seed=seed, workers=workers)
    click.echo(json.dumps(result["summary"], indent=2))
    click.echo(f"report: {result['report']}")
    _exit(0)


@owa.command("bins")
@click.option("--input-dir", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="An event dataset written by `robocurate owa events`.")
@click.option("--output-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--fps", default=10.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Bins per second.")
@click.option("--filter-empty-actions/--no-filter-empty-actions", default=False,
              show_default=True, help="Leave out bins without keyboard/mouse events.")
def owa_bins_cmd(input_dir, output_dir, fps, filter_empty_actions) -> None:
    """Event dataset -> fixed-rate bins: latest screen as state, input events as actions."""
    from flows.owa import owa_bins

    result = _run_flow(owa_bins, input_dir=str(input_dir), output_dir=str(output_dir),
                       fps=fps, filter_empty_actions=filter_empty_actions)
    click.echo(json.dumps(result["summary"], indent=2))
    click.echo(f"report: {result['report']}")
    _exit(0)


from flows.cli_owa_train import pack, tokenize  # noqa: E402

owa.add_command(tokenize)
owa.add_command(pack)


@click.command("owa")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--files", default=2, show_default=True, type=click.IntRange(1))
@click.option("--minutes", default=0.1, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Length of each recording.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--screen-hz", default=20.0, show_default=True,
              type=click.FloatRange(0, min_open=True))
@click.option("--generations", default="", help="Comma-separated legacy schema generations "
              "to add one recording each of (0.1, 0.3, 0.4).")
@click.option("--no-video", is_flag=True, help="Leave out the MKV screen videos.")
@click.option("--no-faults", is_flag=True, help="Only clean recordings.")
def sample_owa(out, files, minutes, seed, screen_hz, generations, no_video, no_faults) -> None:
    """OWAMcap recordings (current schema, optional legacy generations) with MKV screen
    videos whose frames match the screen events, plus broken files labelled in
    OUT/sample_manifest.json."""
    from robocurate.samples.owa import generate_owa_recordings

    try:
        manifest = generate_owa_recordings(
            out, files=files, minutes=minutes, seed=seed, screen_hz=screen_hz,
            generations=tuple(g.strip() for g in generations.split(",") if g.strip()),
            with_video=not no_video, with_faults=not no_faults)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    click.echo(f"wrote {len(manifest['files'])} OWA recordings to {out}")
