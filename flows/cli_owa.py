"""``robocurate owa ...`` and ``robocurate sample owa``."""

from __future__ import annotations

import click

from flows.clikit import _exit, _run_flow  # noqa: F401


@click.group("owa")
def owa() -> None:
    """(being built)"""


@click.command("owa")
def sample_owa() -> None:
    """(being built)"""
