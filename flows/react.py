"""React tactile-visual curation: integrity -> compress -> contact-index -> detect ->
metadata -> preview -> gallery -> clips -> card -> publish, one task per episode.

Quarantining a corrupt file is done here, outside the cached tasks: a cached verdict
may come from a copy of the file, and the rename must happen to this one. Dataset-wide
outputs (bad_frames.json, tasks.json, the card) are merged here from the episode results.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.states import Failed

from flows.observe import (collect, fail_on_task_failures, publish_report,
                           rerun_missing_outputs)
from flows.react_gpu import contact_index_all
from flows.runners import pipeline_flow
from robocurate.log import get_logger
from robocurate.react import card, clips, figures, integrity, metadata, quality
from robocurate.react.gallery import gallery_path
from robocurate.react.layout import DEFAULT_MODE, episode_key, pt_path
from robocurate.report import build_report, now_iso, write_report
from tasks import gpu
from tasks import react as react_tasks

STAGES = ("integrity", "compress", "contact-index", "detect", "metadata", "preview",
          "gallery", "clips", "card", "publish")
# `--stages all`: everything up to the card; publishing is always asked for by name.
ALL = STAGES[:-1]


def parse_stages(text: str | list[str]) -> list[str]:
    names = [s.strip() for s in (text.split(",") if isinstance(text, str) else text)
             if s.strip()]
    if "all" in names:
        names = [s for s in names if s != "all"] + list(ALL)
    unknown = sorted(set(names) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown stages {unknown}; choose from all, {', '.join(STAGES)}")
    return [s for s in STAGES if s in names]


def _integrity(paths: list[str]) -> list[dict]:
    futures = [(p, react_tasks.check_episode.submit(p, [p])) for p in paths]
    return collect(futures, "react integrity", "react-integrity-progress")


def _frozen(det: dict | None) -> dict | None:
    """ot_loss intervals of a detect result in raw (H5) frame coordinates."""
    if not det or det.get("status") != "detected":
        return None
    t = int(det.get("trim_offset") or 0)
    iv = det.get("intervals") or {}
    return {side: [[a + t, b + t] for a, b in iv.get(f"ot_loss_{tag}", [])]
            for side, tag in (("left", "L"), ("right", "R"))}


@pipeline_flow("react-curate", named_by=("task", "date"), threads=4)
def react_curate(root: str, task: str, date: str, stages: list[str] = list(ALL),
                 level: int = 4, workers: int = 2, device: str = "auto",
                 active_sensors: list[str] | None = None, gelsight_lag: int = 0,
                 mode: str = DEFAULT_MODE, projection: bool = True, min_s: float = 1.0,
                 max_s: float = 5.0, gpu_pool: str | None = None, repo_id: str | None = None,
                 approve: bool = False, dry_run: bool = False) -> dict:
    """Curate one task/date of React recordings under ROOT (data/<task>/<date>/episode_*.h5)."""
    stages = parse_stages(stages)
    if not 1 <= level <= 9:
        raise ValueError("gzip level must be 1..9")
    if gelsight_lag < 0:
        raise ValueError("gelsight_lag must be >= 0 frames")
    if "publish" in stages and not repo_id:
        raise ValueError("the publish stage needs repo_id")
    started, t0 = now_iso(), time.perf_counter()
    root_path = Path(root).resolve()
    episodes = [str(p) for p in integrity.discover_episodes(root_path, task, date)]
    if not episodes:
        raise FileNotFoundError(f"no episode_*.h5 under {root_path / 'data' / task / date}")
    logger = get_logger(pipeline="react", task=task, date=date)
    findings, summary, outputs = [], {"episodes": len(episodes)}, []
    sensors = list(active_sensors) if active_sensors else None

    def _panel_inputs(h5: str) -> list[str]:
        # Panels draw the GelSight difference against the .pt's reference frame and the
        # overlay from the calibration: both are inputs of the cached result.
        extra = [pt_path(root_path, task, date, h5, mode), root_path / "calibration.json"]
        return [h5] + [str(p) for p in extra if p.is_file()]

    def take(results: list[dict]) -> list[dict]:
        for r in results:
            findings.extend(r.get("findings", []))
        return results

    # integrity always runs: every later stage reads only files that passed it.
    good = []
    for m in _integrity(episodes):
        findings.extend(m["findings"])
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
        results = take(collect(futures, "react compress", "react-compress-progress"))
        done = [r for r in results if r.get("status") in ("compressed", "already_compressed")]
        summary["compressed"] = sum(r.get("status") == "compressed" for r in results)
        summary["bytes before"] = sum(r.get("bytes_before", 0) for r in done)
        summary["bytes after"] = sum(r.get("bytes_after", 0) for r in done)
        # The rewritten files are checked again before anything downstream reads them.
        for m in _integrity([r["path"] for r in done]):
            if not m.get("ok"):
                findings.extend(m["findings"])
                integrity.quarantine(m["path"])
                good.remove(m["path"])
                summary["quarantined"] += 1

    indexed = [p for p in good if pt_path(root_path, task, date, p, mode).exists()]
    if "contact-index" in stages and good:
        pool = gpu.gpu_pool(gpu_pool)
        if pool:
            digest = hashlib.sha1("\n".join(good).encode()).hexdigest()[:12]
            manifest = root_path / "processed" / mode / task / date / f".contact-{digest}.json"
            manifest.parent.mkdir(parents=True, exist_ok=True)
            results = gpu.dispatch(
                "react-contact-index", pool,
                {"root": str(root_path), "task": task, "date": date, "episodes": good,
                 "manifest": str(manifest), "mode": mode, "device": device,
                 "gelsight_lag": gelsight_lag, "active_sensors": sensors},
                good, str(manifest))
            summary["gpu pool"] = pool
        else:
            results = contact_index_all(root_path, task, date, good, mode=mode, device=device,
                                        gelsight_lag=gelsight_lag, active_sensors=sensors)
        take(results)
        indexed = [r["path"] for r in results if r.get("status") == "indexed"]
        summary["contact indexed"] = len(indexed)
        summary["drift warnings"] = sum(bool(r.get("drift_warning")) for r in results)
        outputs.append(str(root_path / "processed" / mode / task / date))

    detected: dict[str, dict] = {}
    if "detect" in stages and indexed:
        futures = []
        for p in indexed:
            pt = str(pt_path(root_path, task, date, p, mode))
            futures.append((p, react_tasks.detect_episode.submit(p, [p, pt], pt, sensors)))
        results = take(collect(futures, "react detect", "react-detect-progress"))
        detected = {r["path"]: r for r in results}
        q = quality.write_quality_outputs(root_path, task, date, results)
        findings.extend(q["findings"])
        outputs += [str(p) for p in q["paths"].values()]
        summary["detected"] = sum(r.get("status") == "detected" for r in results)
        summary["bad frames"] = sum(r.get("total_bad_frames", 0) for r in results)
        summary["freeze events"] = sum(len(r.get("freeze_events") or []) for r in results)

    if "metadata" in stages and good:
        rows = list(detected.values()) or [
            {"path": p, "key": episode_key(p)} for p in good]
        outputs.append(str(metadata.update_tasks_json(root_path, task, date, rows,
                                                      active_sensors=sensors)))

    for stage, submit_task, out_of in (
            ("preview", react_tasks.preview_episode,
             lambda p: root_path / "figures" / "episode_videos" / task / date
             / (Path(p).stem + ".mp4")),
            ("gallery", react_tasks.gallery_episode,
             lambda p: gallery_path(root_path, task, date, Path(p).stem))):
        if stage not in stages or not good:
            continue
        futures = [(p, submit_task.submit(p, _panel_inputs(p), str(out_of(p)), projection,
                                          _frozen(detected.get(p)))) for p in good]
        results = take(collect(futures, f"react {stage}", f"react-{stage}-progress"))
        results = rerun_missing_outputs(
            results, lambda r, o=out_of: o(r["path"]),
            lambda p, t=submit_task, o=out_of: t.with_options(refresh_cache=True)(
                p, _panel_inputs(p), str(o(p)), projection, _frozen(detected.get(p))))
        summary[f"{stage} files"] = sum(Path(out_of(r["path"])).exists() for r in results)

    if "clips" in stages and detected:
        bad_path = root_path / quality.FIGURES_DIR / quality.BAD_FRAMES_NAME
        bad = json.loads(bad_path.read_text()) if bad_path.is_file() else {}
        clip_dir = root_path / "figures" / "event_clips" / task / date
        futures = []
        for p, det in detected.items():
            if det.get("status") != "detected":
                continue
            key = det["key"]
            events = list(det.get("freeze_events") or []) + clips.events_from_bad_frames(
                key, (bad.get("episodes") or {}).get(key, {}))
            futures.append((p, react_tasks.clips_episode.submit(
                p, [p], events, str(clip_dir), min_s, max_s, int(det.get("trim_offset") or 0),
                projection)))
        results = take(collect(futures, "react clips", "react-clips-progress"))
        made = {c["id"]: str(Path(c["clip"]).relative_to(root_path))
                for r in results for c in r.get("clips", []) if c.get("clip")}
        quality.set_clips(root_path / quality.FIGURES_DIR / quality.FREEZE_NAME, made)
        summary["clips"] = len(made)

    figure_md = ""
    if "card" in stages:
        facts = card.dataset_facts(root_path, mode)
        c = card.refresh_card(root_path, mode=mode, facts=facts)
        findings.extend(c["findings"])
        figs = figures.make_figures(root_path, mode=mode, facts=facts)
        findings.extend(figs["findings"])
        figure_md = figs["markdown"]
        outputs += [str(c["card"])] + [str(p) for p in figs["paths"]]
        summary["card review needed"] = bool(c["review_needed"])

    publish_result, refused = None, None
    if "publish" in stages:
        from flows.publish import PreflightFailed, publish

        try:
            publish_result = publish(folder=str(root_path), repo_id=repo_id, preflight="react",
                                     exclude=["*.corrupt", "**/*.corrupt", "**/.*", ".*"],
                                     approve=approve, dry_run=dry_run)
            summary["publish"] = publish_result["status"]
        except PreflightFailed as exc:
            refused = exc
            summary["publish"] = "preflight failed"
            findings.append({"path": str(root_path), "rule": "preflight_failed", "item": None,
                             "severity": "error", "message": str(exc)})

    summary["findings"] = len(findings)
    report = build_report(pipeline="react curate", root=str(root_path),
                          parameters={"task": task, "date": date, "stages": stages,
                                      "level": level, "mode": mode, "device": device,
                                      "gelsight_lag": gelsight_lag},
                          started=started, seconds=time.perf_counter() - t0, summary=summary,
                          outputs=outputs, findings=findings, run_id=str(flow_run.id or ""))
    path = write_report(root_path, report)
    publish_report(report, key="react-report")
    if figure_md:
        create_markdown_artifact(figure_md, key="react-figures",
                                 description=f"React dataset figures ({task})")
    fail_on_task_failures(findings, path)
    if refused is not None:  # the run ends Failed with the reasons, without a traceback
        return Failed(message=str(refused), data=refused)
    return {"summary": summary, "report": str(path), "findings": len(findings),
            "publish": publish_result}
