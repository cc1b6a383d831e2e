"""``robocurate owa tokenize`` and ``robocurate owa pack`` (attached to the ``owa`` group)."""

from __future__ import annotations

import json

import click

from flows.clikit import _exit, _run_flow


@click.command("tokenize")
@click.option("--input-dir", required=True, type=click.Path(file_okay=False),
              help="Event dataset (robocurate owa events output).")
@click.option("--output-dir", required=True, type=click.Path(file_okay=False))
@click.option("--tokenizer", "tokenizer", required=True,
              help="Tokenizer name on the Hub or local path (AutoTokenizer.from_pretrained).")
@click.option("--encoder-type", type=click.Choice(["hierarchical", "json"]), default="hierarchical",
              show_default=True)
@click.option("--image-token", default="<image>", show_default=True)
@click.option("--image-token-length", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes for datasets.map.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT_DIR if it exists.")
def tokenize(input_dir, output_dir, tokenizer, encoder_type, image_token, image_token_length,
             workers, overwrite) -> None:
    """Tokenise an OWA event dataset for training (EpisodeTokenizer) and save it."""
    from flows.owa_train import owa_tokenize

    result = _run_flow(owa_tokenize, input_dir=input_dir, output_dir=output_dir,
                       tokenizer=tokenizer, encoder_type=encoder_type, image_token=image_token,
                       image_token_length=image_token_length, num_proc=workers,
                       overwrite=overwrite)
    _report(result)


@click.command("pack")
@click.option("--input-dir", required=True, type=click.Path(file_okay=False),
              help="Tokenized dataset (robocurate owa tokenize output).")
@click.option("--output-dir", required=True, type=click.Path(file_okay=False))
@click.option("--max-sequence-length", type=click.IntRange(min=1), default=8192, show_default=True)
@click.option("--pad-token-id", type=int, default=None,
              help="Default: the tokenizer's pad id recorded by the tokenize step, else 0.")
@click.option("--episode-aligned", is_flag=True,
              help="Start a new sequence at every episode (default: sequences span episodes).")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT_DIR if it exists.")
def pack(input_dir, output_dir, max_sequence_length, pad_token_id, episode_aligned, overwrite) -> None:
    """Pack a tokenized OWA dataset into fixed-length sequences (FSLDataset) and save it."""
    from flows.owa_train import owa_pack

    result = _run_flow(owa_pack, input_dir=input_dir, output_dir=output_dir,
                       max_sequence_length=max_sequence_length, pad_token_id=pad_token_id,
                       episode_aligned=episode_aligned, overwrite=overwrite)
    _report(result)


def _report(result: dict) -> None:
    click.echo(json.dumps(result["summary"], indent=2))
    click.echo(f"output: {result['output']}")
    click.echo(f"report: {result['report']}")
    # Findings here are per-event problems with the rest of the data written: exit 1 tells
    # scripts to look at the report.
    _exit(1 if result["findings"] else 0)
