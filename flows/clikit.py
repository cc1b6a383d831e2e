"""Shared pieces of the command line: running a flow, exiting quietly, greedy options."""

from __future__ import annotations

import os
import sys

import click


class GreedyOption(click.Option):
    """An option taking one or more values until the next flag (``--keys a b c``),
    also repeatable (``--keys a --keys b``)."""

    def add_to_parser(self, parser, ctx):
        result = super().add_to_parser(parser, ctx)
        for name in self.opts:
            opt = parser._long_opt.get(name) or parser._short_opt.get(name)
            if opt is None:
                continue
            original = opt.process

            def process(value, state, original=original):
                values = [value]
                while state.rargs and not state.rargs[0].startswith("-"):
                    values.append(state.rargs.pop(0))
                for v in values:
                    original(v, state)

            opt.process = process
        return result


def _run_flow(flow_fn, **params):
    """Run a flow in this process; data problems are findings, other errors exit 2."""
    from flows.observe import TasksFailed, route_logs_to_prefect

    route_logs_to_prefect(json_console=click.get_current_context().find_root().params["log_json"])
    from flows.storage import save_storage_block

    try:
        save_storage_block()
        return flow_fn(**params)
    except TasksFailed as exc:
        click.echo(f"robocurate: {exc}", err=True)
        _exit(1)
    except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
        click.echo(f"robocurate: error: {exc}", err=True)
        _exit(2)


def _exit(code: int) -> None:
    """Leave without the embedded server's shutdown noise.

    On interpreter exit Prefect's background services are cancelled and print
    CancelledError tracebacks to stderr; they carry no information for users, so
    stderr is closed once our own output is flushed.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    sys.exit(code)
