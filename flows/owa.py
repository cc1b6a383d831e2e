"""Open World Agents flows: ``owa-events`` (MCAP -> event dataset) and ``owa-bins``
(event dataset -> binned dataset). The run report goes next to the dataset files
(``OUT/robocurate-report.json``; ``load_from_disk`` ignores it) and to the Prefect UI.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from prefect.runtime import flow_run

from flows.observe import collect, fail_on_task_failures, publish_report
from flows.runners import pipeline_flow
from robocurate.log import get_logger
from robocurate.owa import events
from robocurate.report import build_report, now_iso, write_report
from tasks import owa as owa_tasks
from tasks import pool


@pipeline_flow("owa-events", named_by=("train_dir",), threads=16)
def owa_events(train_dir: str, output_dir: str, test_dir: str | None = None,
               rates: dict[str, float] | None = None, keep_topics: list[str] | None = None,
               test_percent: float = 0.2, seed: int = 0, workers: int = 2) -> dict:
    """OWAMcap recordings in TRAIN_DIR (and TEST_DIR) -> a train/test event DatasetDict
    saved at OUTPUT_DIR: topic filter, per-topic rate limits, seeded split."""
    started, t0 = now_iso(), time.perf_counter()
    settings = events.EventSettings(tuple(keep_topics or events.DEFAULT_TOPICS),
                                    dict(events.DEFAULT_RATES if rates is None else rates))
    splits = events.split_files(train_dir, test_dir, test_percent=test_percent, seed=seed)
    out = Path(output_dir).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    logger = get_logger(pipeline="owa events", output=str(out))
    logger.info("split", **{k: len(v) for k, v in splits.items()})
    pool.configure(workers)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".shards", dir=out.parent))
    try:
        futures, where = [], []
        for split, files in splits.items():
            for i, p in enumerate(files):
                shard = str(scratch / f"{split}-{i:06d}.arrow")
                futures.append((str(p), owa_tasks.extract_episode.submit(
                    str(p), shard, list(settings.keep_topics), settings.rates)))
                where.append(split)
        results = collect(futures, "owa events", "owa-events-progress")
        shards = {s: [] for s in splits}
        for split, r in zip(where, results):
            r.setdefault("messages", 0)
            r.setdefault("rows", 0)
            r.setdefault("ok", False)
            r["split"] = split
            if r["ok"] and r.get("shard"):
                shards[split].append(r["shard"])
            for f in r["findings"]:
                getattr(logger.bind(file=f["path"]), f["severity"])(f["rule"], message=f["message"])
        owa_tasks.save_events(shards, str(out))
    finally:
        pool.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)

    result = events.summarise(results, splits, time.perf_counter() - t0)
    summary, findings = result["summary"], result["findings"]
    summary["findings"] = len(findings)
    report = build_report(
        pipeline="owa events", root=str(out),
        parameters={"train_dir": str(train_dir), "test_dir": test_dir,
                    "rates": settings.rates, "keep_topics": list(settings.keep_topics),
                    "test_percent": test_percent, "seed": seed, "workers": workers},
        started=started, seconds=time.perf_counter() - t0, summary=summary, outputs=[str(out)],
        findings=findings, run_id=str(flow_run.id or ""),
        files=[{k: r.get(k) for k in ("path", "split", "ok", "rule", "messages", "rows")}
               for r in results])
    report_path = write_report(out, report)
    publish_report(report, key="owa-events-report")
    fail_on_task_failures(findings, report_path)
    logger.info("done", report=str(report_path))
    return {"report": str(report_path), "summary": summary, "output": str(out),
            "findings": len(findings)}


@pipeline_flow("owa-bins", named_by=("input_dir",), threads=4)
def owa_bins(input_dir: str, output_dir: str, fps: float = 10.0,
             filter_empty_actions: bool = False) -> dict:
    """Event dataset at INPUT_DIR -> fixed-rate binned dataset at OUTPUT_DIR."""
    started, t0 = now_iso(), time.perf_counter()
    out = Path(output_dir).resolve()
    if not Path(input_dir).is_dir():  # before the task: a missing input is not retried
        raise NotADirectoryError(f"event dataset {input_dir} is not a directory")
    result = owa_tasks.build_bins(str(input_dir), str(out), fps, filter_empty_actions)
    summary, findings = result["summary"], result["findings"]
    summary["findings"] = len(findings)
    report = build_report(
        pipeline="owa bins", root=str(out),
        parameters={"input_dir": str(input_dir), "fps": fps,
                    "filter_empty_actions": filter_empty_actions},
        started=started, seconds=time.perf_counter() - t0, summary=summary,
        outputs=[str(out)], findings=findings, run_id=str(flow_run.id or ""))
    report_path = write_report(out, report)
    publish_report(report, key="owa-bins-report")
    return {"report": str(report_path), "summary": summary, "output": str(out),
            "findings": len(findings)}
