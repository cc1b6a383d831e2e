"""React tactile-visual curation flow: integrity -> compression (more stages to come).

Quarantining a corrupt file is done here, outside the cached tasks: a cached verdict
may come from a copy of the file, and the rename must happen to this one.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect.runtime import flow_run

from flows.observe import collect, fail_on_task_failures, publish_report
from flows.runners import pipeline_flow
from robocurate.log import get_logger
from robocurate.react import integrity
from robocurate.report import build_report, now_iso, write_report
from tasks import react as react_tasks

STAGES = ("integrity", "compress")




def _integrity(paths: list[str]) -> list[dict]:
    futures = [(p, react_tasks.check_episode.submit(p, [p])) for p in paths]
    return collect(futures, "react integrity", "react-integrity-progress")


@pipeline_flow("react-curate", named_by=("task", "date"), threads=4)
def react_curate(root: str, task: str, date: str, stages: list[str] = list(STAGES),
                 level: int = 4, workers: int = 2) -> dict:
    """Curate one task/date of React recordings under ROOT (data/<task>/<date>/episode_*.h5)."""
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown or not yet available stages {sorted(unknown)}; "
                         f"choose from {list(STAGES)}")
    if not 1 <= level <= 9:
        raise ValueError("gzip level must be 1..9")
    started, t0 = now_iso(), time.perf_counter()
    root_path = Path(root).resolve()
    episodes = [str(p) for p in integrity.discover_episodes(root_path, task, date)]
    if not episodes:
        raise FileNotFoundError(f"no episode_*.h5 under {root_path / 'data' / task / date}")
    logger = get_logger(pipeline="react", task=task, date=date)
    findings, summary, outputs = [], {"episodes": len(episodes)}, []

    checked = _integrity(episodes)
    good = []
    for m in checked:
        findings += m["findings"]
        if m.get("ok"):
            good.append(m["path"])
        else:
            moved = integrity.quarantine(m["path"])
            logger.warning("quarantined", file=m["path"], to=str(moved))
            findings.append({"path": m["path"], "rule": "quarantined", "item": None,
                             "severity": "warning", "message": f"renamed to {moved.name}"})
    summary["passed integrity"] = len(good)
    summary["quarantined"] = len(episodes) - len(good)

    if "compress" in stages and good:
        futures = [(p, react_tasks.compress_episode.submit(p, [p], level, workers)) for p in good]
        results = collect(futures, "react compress", "react-compress-progress")
        findings += [f for r in results for f in r.get("findings", [])]
        done = [r for r in results if r.get("status") in ("compressed", "already_compressed")]
        before = sum(r.get("bytes_before", 0) for r in done)
        after = sum(r.get("bytes_after", 0) for r in done)
        summary["compressed"] = sum(r.get("status") == "compressed" for r in results)
        summary["bytes before"], summary["bytes after"] = before, after
        # The rewritten files are checked again before anything downstream reads them.
        for m in _integrity([r["path"] for r in done]):
            if not m.get("ok"):
                findings += m["findings"]
                integrity.quarantine(m["path"])
                summary["quarantined"] += 1

    summary["findings"] = len(findings)
    report = build_report(pipeline="react curate", root=str(root_path),
                          parameters={"task": task, "date": date, "stages": list(stages),
                                      "level": level}, started=started,
                          seconds=time.perf_counter() - t0, summary=summary, outputs=outputs,
                          findings=findings, run_id=str(flow_run.id or ""))
    path = write_report(root_path, report)
    publish_report(report, key="react-report")
    fail_on_task_failures(findings, path)
    return {"summary": summary, "report": str(path), "findings": len(findings)}
