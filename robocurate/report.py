"""The run report: what a flow did and every finding, as JSON and markdown."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

from robocurate.io.atomic import atomic_write_json

REPORT_NAME = "robocurate-report.json"


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def build_report(*, pipeline: str, root: str, parameters: dict, started: str, seconds: float,
                 summary: dict, outputs: list[str], findings: list[dict],
                 files: list[dict] | None = None, run_id: str | None = None) -> dict:
    return {
        "pipeline": pipeline,
        "root": str(root),
        "flow_run_id": run_id,
        "started": started,
        "finished": now_iso(),
        "seconds": round(seconds, 3),
        "parameters": parameters,
        "summary": summary,
        "findings_by_rule": dict(sorted(Counter(f["rule"] for f in findings).items())),
        "outputs": outputs,
        "files": files or [],
        "findings": findings,
    }


def write_report(root: str | Path, report: dict) -> Path:
    path = Path(root) / REPORT_NAME
    atomic_write_json(path, report)
    return path


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def report_markdown(report: dict, max_findings: int = 200) -> str:
    lines = [f"# robocurate {report['pipeline']} report", "",
             f"Root: `{report['root']}`  ", f"Finished: {report['finished']} "
             f"({report['seconds']} s)", "", "## Summary", "", "| | |", "|---|---|"]
    lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in report["summary"].items()]
    if report["findings_by_rule"]:
        lines += ["", "## Findings by rule", "", "| rule | count |", "|---|---|"]
        lines += [f"| {_cell(k)} | {v} |" for k, v in report["findings_by_rule"].items()]
    if report["outputs"]:
        lines += ["", "## Outputs", ""] + [f"- `{o}`" for o in report["outputs"]]
    findings = report["findings"]
    if findings:
        lines += ["", "## Findings", "", "| severity | file | item | rule | message |",
                  "|---|---|---|---|---|"]
        for f in findings[:max_findings]:
            lines.append(f"| {f['severity']} | {_cell(f['path'])} | {_cell(f.get('item') or '')} "
                         f"| {f['rule']} | {_cell(f['message'])} |")
        if len(findings) > max_findings:
            lines.append(f"\n{len(findings) - max_findings} more in {REPORT_NAME}.")
    return "\n".join(lines) + "\n"
