"""Demonstration HDF5 flows: check, statistics, train/valid split."""

from __future__ import annotations

import os
import time
from pathlib import Path

from prefect.runtime import flow_run

from flows.observe import collect, fail_on_task_failures, publish_report
from flows.runners import pipeline_flow
from robocurate.demos import statistics
from robocurate.io.atomic import atomic_write_json
from robocurate.log import get_logger
from robocurate.report import build_report, now_iso, write_report
from tasks import demos as demo_tasks
from tasks import pool




def _report(pipeline: str, root: Path, manifests: list[dict], parameters: dict, started: str,
            t0: float, summary: dict, outputs: list[str], key: str) -> str:
    findings = [f for m in manifests for f in m.get("findings", [])]
    report = build_report(pipeline=pipeline, root=str(root), parameters=parameters,
                          started=started, seconds=time.perf_counter() - t0, summary=summary,
                          outputs=outputs, findings=findings, run_id=str(flow_run.id or ""))
    try:
        path = write_report(root, report)
    except OSError:  # inputs on read-only storage: the report goes to the working directory
        path = write_report(Path.cwd(), report)
    publish_report(report, key=key)
    fail_on_task_failures(findings, path)
    return str(path)


def _common_root(paths: list[str]) -> Path:
    return Path(os.path.commonpath([str(Path(p).resolve().parent) for p in paths]))


def _check_paths(files: list[str]) -> list[str]:
    if not files:
        raise ValueError("no demonstration files given")
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"not a file: {', '.join(missing)}")
    return [str(Path(f).resolve()) for f in files]


@pipeline_flow("demos-check", named_by=("files",), threads=16)
def demos_check(files: list[str], demo_schema: str = "auto", workers: int = 2,
                report_dir: str | None = None) -> dict:
    """Validate demonstration files: errors make the data unusable, warnings are quirks.
    (``demo_schema``, not ``schema``: pydantic reserves that name.)"""
    schema = demo_schema
    if schema not in ("auto", "robomimic", "seed", "robosuite"):
        raise ValueError(f"unknown schema {schema!r}")
    started, t0 = now_iso(), time.perf_counter()
    files = _check_paths(files)
    logger = get_logger(pipeline="demos-check")
    pool.configure(workers)
    try:
        futures = [(p, demo_tasks.check_file.submit(p, [p], schema)) for p in files]
        manifests = collect(futures, "demos check", "demos-check-progress")
    finally:
        pool.shutdown()
    for m in manifests:
        flog = logger.bind(file=m["path"])
        for f in m["findings"]:
            getattr(flog, f["severity"])(f["rule"], item=f.get("item"), message=f["message"])
    errors = sum(f["severity"] == "error" for m in manifests for f in m["findings"])
    warnings = sum(f["severity"] == "warning" for m in manifests for f in m["findings"])
    summary = {"files": len(files), "demos": sum(m.get("demos", 0) for m in manifests),
               "steps": sum(m.get("steps", 0) for m in manifests),
               "errors": errors, "warnings": warnings}
    root = Path(report_dir) if report_dir else _common_root(files)
    report = _report("demos check", root, manifests, {"files": files, "schema": schema},
                     started, t0, summary, [], key="demos-check-report")
    return {"summary": summary, "report": report, "files": [
        {k: m.get(k) for k in ("path", "schema", "status", "demos", "findings")}
        for m in manifests]}


@pipeline_flow("demos-stats", named_by=("files",), threads=16)
def demos_stats(files: list[str], out: str, demo_schema: str = "auto", workers: int = 2) -> dict:
    """Dataset statistics merged exactly across demos and files, written to ``out``."""
    schema = demo_schema
    started, t0 = now_iso(), time.perf_counter()
    files = _check_paths(files)
    pool.configure(workers)
    try:
        futures = [(p, demo_tasks.file_stats.submit(p, [p], schema)) for p in files]
        manifests = collect(futures, "demos stats", "demos-stats-progress")
        # Cached results point at value files under ROBOCURATE_HOME; recompute any whose
        # values were pruned since.
        manifests = [m if all(Path(v).is_file() for v in m.get("values", {}).values())
                     else statistics.file_stats(m["path"], demo_tasks.values_dir(m["path"]),
                                                schema)
                     for m in manifests]
    finally:
        pool.shutdown()
    result = statistics.merge_file_stats([m for m in manifests if "lengths" in m])
    atomic_write_json(out, result)
    summary = {"files": len(files), "demos": result["demos"], "total steps": result["total_steps"],
               "success rate": result["success_rate"], "keys": len(result["keys"])}
    report = _report("demos stats", Path(out).resolve().parent, manifests,
                     {"files": files, "out": out, "schema": schema}, started, t0, summary,
                     [str(Path(out).resolve())], key="demos-stats-report")
    return {"summary": summary, "report": report, "out": str(Path(out).resolve())}


@pipeline_flow("demos-split", named_by=("files",), threads=4)
def demos_split(files: list[str], valid_fraction: float = 0.1, seed: int = 0) -> dict:
    """Write mask/train and mask/valid into each file (a crash-safe addition)."""
    started, t0 = now_iso(), time.perf_counter()
    files = _check_paths(files)
    futures = [(p, demo_tasks.split_file.submit(p, [p], valid_fraction, seed)) for p in files]
    manifests = collect(futures, "demos split", "demos-split-progress")
    summary = {"files": len(files),
               "train demos": sum(len(m.get("train", [])) for m in manifests),
               "valid demos": sum(len(m.get("valid", [])) for m in manifests)}
    report = _report("demos split", _common_root(files), manifests,
                     {"files": files, "valid_fraction": valid_fraction, "seed": seed},
                     started, t0, summary, files, key="demos-split-report")
    return {"summary": summary, "report": report}


@pipeline_flow("demos-normalizer-fit")
def demos_normalizer_fit(files: list[str], out: str, keys: list[str] | None = None,
                         mode: str = "gaussian", mask: str | None = None) -> dict:
    """Fit a DataNormalizer (gaussian or minmax) over the files and save it as JSON."""
    if mode not in ("gaussian", "minmax"):
        raise ValueError(f"unknown mode {mode!r}")
    files = _check_paths(files)
    out = str(Path(out).resolve())
    result = demo_tasks.fit_normalizer(files, out, keys, mode, mask)
    if not Path(out).is_file():  # a cached result whose file was removed since
        result = demo_tasks.fit_normalizer.with_options(refresh_cache=True)(
            files, out, keys, mode, mask)
    return result
