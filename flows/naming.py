"""Flow-run names that say which dataset (and date) a run worked on, so a list of runs in
the UI reads as a list of datasets rather than Prefect's random adjective-animal names."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path


def _short(value) -> str:
    if isinstance(value, (list, tuple)):
        if not value:
            return "none"
        first = _short(value[0])
        return first if len(value) == 1 else f"{first}+{len(value) - 1}"
    text = str(value)
    return Path(text).name or text if ("/" in text or "\\" in text) else text


def run_name(prefix: str, *params: str):
    """A callable for ``@flow(flow_run_name=...)``: ``prefix <param values> <UTC time>``."""

    def name() -> str:
        from prefect.runtime import flow_run

        values = flow_run.parameters or {}
        parts = [_short(values[p]) for p in params if values.get(p) not in (None, "", [])]
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M")
        return " ".join([prefix, "/".join(parts), stamp]).replace("  ", " ")

    return name
