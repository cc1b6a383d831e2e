"""``robocurate droid ...`` and ``robocurate sample droid``."""

from __future__ import annotations

import click

from flows.clikit import _exit, _run_flow  # noqa: F401


@click.group("droid")
def droid() -> None:
    """(being built)"""


@click.command("droid")
def sample_droid() -> None:
    """(being built)"""
