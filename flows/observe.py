"""Logs, progress and report artifacts of a flow run."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from contextlib import contextmanager
from pathlib import Path

from prefect import get_run_logger
from prefect.artifacts import (create_markdown_artifact, create_progress_artifact,
                               create_table_artifact, update_progress_artifact)
from prefect.context import FlowRunContext, TaskRunContext

from robocurate import log
from robocurate.report import report_markdown


def _prefect_sink(level: str, event_dict: dict) -> bool:
    """Send a structlog record to the current run's logger (and so to the API/UI)."""
    if not (FlowRunContext.get() or TaskRunContext.get()):
        return False
    event = event_dict.pop("event", "")
    for k in ("timestamp", "level", "logger"):
        event_dict.pop(k, None)
    context = " ".join(f"{k}={v}" for k, v in event_dict.items())
    get_run_logger().log(getattr(logging, level.upper(), logging.INFO),
                         f"{event} {context}".strip(),
                         extra={"event": event, "context": event_dict})
    return True


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, run, message and bound context."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "timestamp": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None) or record.getMessage(),
        }
        for key in ("flow_run_name", "flow_run_id", "task_run_name", "task_run_id"):
            if getattr(record, key, None):
                out[key] = str(getattr(record, key))
        out.update(getattr(record, "context", None) or {})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def route_logs_to_prefect(json_console: bool = False) -> None:
    """structlog records go to the run logger; with ``json_console`` Prefect's own
    console lines become JSON too, so stderr is machine-readable throughout."""
    log.set_sink(_prefect_sink)
    if json_console:
        for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", ""):
            for handler in logging.getLogger(name).handlers:
                if isinstance(handler, logging.StreamHandler):
                    handler.setFormatter(JsonLineFormatter())


@contextmanager
def progress(total: int, description: str, key: str):
    """A terminal progress bar (when stderr is a terminal) and a Prefect progress artifact."""
    bar = None
    if sys.stderr.isatty():
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        bar_task = bar.add_task(description, total=total)
    artifact = create_progress_artifact(0.0, key=key, description=description)
    state = {"done": 0, "reported": 0.0}

    def advance(n: int = 1) -> None:
        state["done"] += n
        if bar is not None:
            bar.update(bar_task, completed=state["done"])
        pct = 100.0 * state["done"] / max(total, 1)
        if pct - state["reported"] >= 5 or state["done"] >= total:
            update_progress_artifact(artifact, pct)
            state["reported"] = pct

    try:
        yield advance
    finally:
        if bar is not None:
            bar.stop()


def publish_report(report: dict, key: str) -> None:
    """The run report as a markdown artifact and the findings as a table artifact."""
    create_markdown_artifact(report_markdown(report), key=key,
                             description=f"robocurate {report['pipeline']} run report")
    rows = [{k: f.get(k) or "" for k in ("severity", "path", "item", "rule", "message")}
            for f in report["findings"]] or [{"severity": "", "path": "", "item": "",
                                              "rule": "none", "message": "no findings"}]
    create_table_artifact(rows, key=f"{key}-findings",
                          description=f"robocurate {report['pipeline']} findings")


def collect(futures, label: str, key: str) -> list[dict]:
    """Task results in submission order, with a progress bar. A task that failed after its
    retries becomes a ``task_failed`` finding; a result served from the cache entry of a
    copy of the file at another path is relabelled with this file's path, and marked
    ``cached``."""
    out = []
    with progress(len(futures), label, key=key) as advance:
        for path, fut in futures:
            fut.wait()
            cached = fut.state.name == "Cached"
            result = fut.result(raise_on_failure=False)
            if not isinstance(result, dict):
                result = {"path": path, "ok": False, "status": "failed", "findings": [{
                    "path": path, "rule": "task_failed", "item": None, "severity": "error",
                    "message": f"{type(result).__name__}: {result}"}]}
            else:
                result = {**result, "path": path, "cached": cached,
                          "findings": [{**f, "path": path} for f in result.get("findings", [])]}
            out.append(result)
            advance()
    return out


def rerun_missing_outputs(results: list[dict], output_of, rerun) -> list[dict]:
    """A cached result whose output file was deleted since is no result: run that one again,
    bypassing the cache. ``output_of(result)`` names the file; ``rerun(path)`` calls the task
    (``task.with_options(refresh_cache=True)(...)``). Cached outputs that are still there
    are touched: they are current for this content (preflight compares mtimes)."""
    for i, r in enumerate(results):
        out = output_of(r)
        if not (r.get("cached") and out):
            continue
        if Path(out).exists():
            Path(out).touch()
        else:
            results[i] = {**rerun(r["path"]), "path": r["path"], "cached": False}
    return results


class TasksFailed(RuntimeError):
    """Some tasks failed after their retries (not a data problem: those are findings).

    Raised after the report is written so the flow run ends Failed; retrying the run from
    the UI (or ``prefect flow-run retry``) re-executes only that work, since every
    completed task is a cache hit.
    """


def fail_on_task_failures(findings: list[dict], report_path) -> None:
    failed = sorted({f["path"] for f in findings if f.get("rule") == "task_failed"})
    if failed:
        shown = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "")
        raise TasksFailed(f"{len(failed)} task(s) failed after their retries ({shown}); "
                          f"report: {report_path}. Retry the run: completed work is cached.")
