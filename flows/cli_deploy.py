"""``robocurate deploy ...``: prepare a Prefect server for robocurate's deployments."""

from __future__ import annotations

import os

import click

from flows.clikit import _exit


@click.group("deploy")
def deploy() -> None:
    """Prepare a Prefect server (PREFECT_API_URL) for `prefect deploy --all`."""


@deploy.command("setup")
@click.option("--gpu-slots", default=1, show_default=True, type=click.IntRange(1),
              help="GPU flow runs at once (pool concurrency and the `gpu` tag limit).")
@click.option("--cpu-pool-type", default="process", show_default=True,
              type=click.Choice(["process", "docker"]))
@click.option("--gpu-pool-type", default="docker", show_default=True,
              type=click.Choice(["docker", "process"]),
              help="process: a GPU host without Docker (the worker runs in its venv).")
@click.option("--hf-token-from-env", is_flag=True,
              help="Save $HF_TOKEN as the Secret block `hf-token` for the push flow.")
def setup_cmd(gpu_slots, cpu_pool_type, gpu_pool_type, hf_token_from_env) -> None:
    """Create or update the work pools, GPU concurrency limits and blocks (idempotent)."""
    from flows.deploy_setup import setup

    if not os.environ.get("PREFECT_API_URL"):
        click.echo("robocurate: error: set PREFECT_API_URL to your Prefect server "
                   "(e.g. http://127.0.0.1:4200/api)", err=True)
        _exit(2)
    token = os.environ.get("HF_TOKEN") if hf_token_from_env else None
    if hf_token_from_env and not token:
        click.echo("robocurate: error: --hf-token-from-env but HF_TOKEN is not set", err=True)
        _exit(2)
    try:
        for line in setup(gpu_slots=gpu_slots, cpu_pool_type=cpu_pool_type,
                          gpu_pool_type=gpu_pool_type, hf_token=token):
            click.echo(line)
    except ValueError as exc:
        click.echo(f"robocurate: error: {exc}", err=True)
        _exit(2)
    _exit(0)
