"""MolmoSpaces post-processing flow: repair video paths -> validate -> statistics.

One task per data file (each file's stages share one crash-safe transaction); the split
outputs (index, aggregate statistics) and the run report are written from the small
manifests the tasks return.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect.runtime import flow_run

from flows.observe import collect, fail_on_task_failures, publish_report
from flows.runners import pipeline_flow
from robocurate.log import get_logger
from robocurate.molmo import outputs
from robocurate.molmo.layout import batch_suffix, data_files, split_dirs
from robocurate.molmo.options import MolmoOptions
from robocurate.molmo.pipeline import STAGES
from robocurate.report import build_report, now_iso, write_report
from tasks import molmo as molmo_tasks
from tasks import pool


def _videos_by_suffix(directory: Path) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for p in sorted(directory.glob("episode_*.mp4")):
        if "_batch_" in p.stem:
            groups.setdefault("batch_" + p.stem.rsplit("_batch_", 1)[1], []).append(str(p))
    return groups


def _inputs(h5: Path, videos_cache: dict) -> list[str]:
    """The files a task reads: the data file and its episode videos."""
    if h5.parent not in videos_cache:
        videos_cache[h5.parent] = _videos_by_suffix(h5.parent)
    return [str(h5)] + videos_cache[h5.parent].get(batch_suffix(h5), [])


def _summarise(manifests: list[dict], stages) -> dict:
    n_traj = sum(m["n_traj"] for m in manifests)
    n_valid = sum(len(m["valid"] or {}) for m in manifests)
    summary = {
        "files": len(manifests),
        "unreadable files": sum(m["status"] == "unreadable" for m in manifests),
        "files changed": sum(bool(m.get("changed")) for m in manifests),
        "trajectories": n_traj,
    }
    if "repair" in stages:
        summary["video paths written"] = sum(m["repaired"] for m in manifests)
    if "validate" in stages or "stats" in stages:
        summary["valid trajectories"] = n_valid
        summary["invalid trajectories"] = n_traj - n_valid
    return summary


def _log_findings(logger, manifest: dict, limit: int = 20) -> None:
    flog = logger.bind(file=manifest["relpath"])
    for f in manifest["findings"][:limit]:
        getattr(flog, f["severity"])(
            f["rule"], item=f.get("item"), message=f["message"])
    if len(manifest["findings"]) > limit:
        flog.warning("more findings", count=len(manifest["findings"]) - limit)


@pipeline_flow("molmo-postprocess", named_by=("root",), threads=16, log_prints=True)
def molmo_postprocess(root: str, options: MolmoOptions = MolmoOptions(),
                      stages: list[str] = list(STAGES), workers: int = 2) -> dict:
    """Repair video paths, validate trajectories and compute statistics under ROOT
    (a split directory, or a dataset root with train/val/test)."""
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; choose from {list(STAGES)}")
    stages = [s for s in STAGES if s in stages]
    label = "+".join(stages)
    started_at, t0 = now_iso(), time.perf_counter()
    root_path = Path(root).resolve()
    logger = get_logger(pipeline="molmo", root=str(root_path))
    if not root_path.is_dir():
        raise FileNotFoundError(f"dataset root {root_path} is not a directory")
    pool.configure(workers)

    all_manifests, written, findings = [], [], []
    try:
        for split in split_dirs(root_path):
            files = data_files(split)
            logger.info("split", split=str(split), files=len(files), stages=label)
            videos: dict = {}
            futures = [
                (str(h5), molmo_tasks.process_file.submit(
                    str(h5), str(split), str(h5.relative_to(split)), _inputs(h5, videos),
                    options, stages, label))
                for h5 in files]
            manifests = []
            for m in collect(futures, f"molmo {label} {split.name}", "molmo-progress"):
                h5 = Path(m["path"])
                m = {"n_traj": 0, "repaired": 0, "valid": None, "stats": None,
                     "changed": False, **m, "relpath": str(h5.relative_to(split)),
                     "house": h5.parent.name}
                # A cached result describes an earlier run: nothing changed in this one.
                m["changed"] = m["changed"] and not m.get("cached")
                manifests.append(m)
                _log_findings(logger, m)
            if "validate" in stages:
                p = outputs.write_index(split, outputs.build_index(manifests), options.overwrite)
                written += [str(p)] if p else []
            if "stats" in stages:
                written += [str(p) for p in
                            outputs.write_aggregate(split, outputs.aggregate_stats(manifests))]
            all_manifests += manifests
    finally:
        pool.shutdown()

    for m in all_manifests:
        findings += m["findings"]
    summary = _summarise(all_manifests, stages)
    summary["cached files"] = sum(bool(m.get("cached")) for m in all_manifests)
    summary["findings"] = len(findings)
    report = build_report(
        pipeline=f"molmo {label}", root=str(root_path),
        parameters={"options": options.model_dump(mode="json"), "stages": stages,
                    "workers": workers},
        started=started_at, seconds=time.perf_counter() - t0, summary=summary,
        outputs=written, findings=findings, run_id=str(flow_run.id or ""),
        files=[{k: m.get(k) for k in ("relpath", "status", "n_traj", "changed", "cached")}
               | {"valid": len(m.get("valid") or {})} for m in all_manifests])
    report_path = write_report(root_path, report)
    publish_report(report, key="molmo-report")
    fail_on_task_failures(findings, report_path)
    logger.info("done", report=str(report_path), **{k.replace(" ", "_"): v
                                                   for k, v in summary.items()})
    return {"report": str(report_path), "summary": summary, "outputs": written,
            "findings": len(findings)}
