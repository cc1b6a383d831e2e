"""structlog set-up: bound context (pipeline, file, trajectory), console or JSON lines.

The final sink is pluggable so the orchestration layer can route records into
Prefect's run logger without this library importing Prefect.
"""

from __future__ import annotations

import logging
import sys

import structlog

_sink = None


def set_sink(sink) -> None:
    """``sink(level_name, message, event_dict)`` receives every record, or None for stderr."""
    global _sink
    _sink = sink


def _route(logger, method_name, event_dict):
    if _sink is not None and _sink(method_name, event_dict):
        raise structlog.DropEvent
    return event_dict


def configure(json_logs: bool = False, level: str = "INFO") -> None:
    renderer = (structlog.processors.JSONRenderer() if json_logs
                else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _route,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(**context):
    return structlog.get_logger("robocurate").bind(**context)
