"""DROID training-data flow: one task chain per episode, batched publishing.

Per episode, one ``droid-episode`` task cached by the content of what the episode reads
(tasks/droid.py), running ``droid-tracks`` (metadata mode: intrinsics, contact tracks,
1 mm flow, extrinsics, 2D projections, quality; staged under ``OUT_ROOT/.staging``) ->
``droid-depth`` (full mode only; in process with one of ``gpus`` devices, or with
``gpu_pool`` a run of the ``droid-depth`` flow on that work pool) -> ``droid-finalize``
(the staged folder renamed to ``OUT_ROOT/<lab>/<outcome>/<date>/<ts>``). A failed step
leaves its staging folder in place and names it; a successful chain leaves nothing
behind. A retried or repeated run serves finished episodes from the cache (and runs an
episode again if its output folder has gone).

Publishing (``publish_full`` / ``publish_metadata``): each finished episode is copied into
the queue of a :class:`robocurate.hub.batch.BatchPublisher` under ``OUT_ROOT/.publish``
and a batch goes out every ``publish_interval`` seconds (and at the end of the run) to
both repositories, the metadata one without depth videos. Queue entries are named
``lab+outcome+date+timestamp`` and pushed back into the nested layout. Episodes already
on every target repository (their ``tracks.npz`` is there) are skipped unless
``skip_hub_check``.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

from prefect.runtime import flow_run

from flows.observe import fail_on_task_failures, progress, publish_report
from flows.runners import pipeline_flow
from robocurate.droid import calibration
from robocurate.droid.episode import STAGING, TrackOptions, input_files
from robocurate.droid.layout import Episode, SupersetIndex, discover_episodes, order_episodes
from robocurate.log import get_logger
from robocurate.report import build_report, now_iso, write_report
from tasks import droid as droid_tasks
from tasks import gpu, pool

MODES = ("metadata", "full")
PUBLISH_QUEUE = ".publish"
METADATA_EXCLUDE = ["*/depth.mkv", "*/depth_meta.json"]


def queue_name(rel: str) -> str:
    return rel.replace("/", "+")


def rel_from_queue_name(name: str) -> str:
    return "/".join(name.split("+", 3))


def nested_push(folder, target, token, *, include=(), exclude=(), commit_message="", **kw):
    """BatchPublisher's push: the flat queue names become the DROID folder layout (hard
    links, so nothing is copied), then the usual incremental push of that tree."""
    from robocurate.hub.push import push_folder

    folder = Path(folder)
    view = folder.parent / "tree"
    shutil.rmtree(view, ignore_errors=True)
    for ep in sorted(p for p in folder.iterdir() if p.is_dir()):
        dest = view / rel_from_queue_name(ep.name)
        for src in ep.rglob("*"):
            if src.is_file():
                out = dest / src.relative_to(ep)
                out.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(src, out)
                except OSError:
                    shutil.copy2(src, out)
    view.mkdir(parents=True, exist_ok=True)
    return push_folder(view, target, token, include=include, exclude=exclude,
                       commit_message=commit_message, **kw)


def _publisher(out_root: Path, publish_full, publish_metadata, interval, endpoint, push):
    from robocurate.hub.batch import BatchPublisher, BatchTarget
    from robocurate.hub.push import Target
    from tasks.publish import resolve_token

    targets = []
    if publish_full:
        targets.append(BatchTarget(Target(publish_full, endpoint=endpoint)))
    if publish_metadata:
        targets.append(BatchTarget(Target(publish_metadata, endpoint=endpoint),
                                   exclude=list(METADATA_EXCLUDE)))
    if not targets:
        return None
    return BatchPublisher(out_root / PUBLISH_QUEUE, targets, token=resolve_token(None),
                          every_s=interval, push=push)


def _on_hub(publisher) -> set[str]:
    """Episode folders (rel paths) whose tracks.npz is already on every target."""
    from huggingface_hub import HfApi

    from robocurate.hub.push import remote_files

    have = None
    for bt in publisher.targets:
        api = HfApi(endpoint=bt.target.endpoint, token=publisher.token)
        eps = {p[: -len("/tracks.npz")] for p in remote_files(api, bt.target)
               if p.endswith("/tracks.npz")}
        have = eps if have is None else have & eps
    return have or set()


def _finding(path, rule, message, item=None, severity="error") -> dict:
    return {"path": str(path), "rule": rule, "message": message, "item": item,
            "severity": severity}


def _check(mode, episodes, workers, gpus, intrinsics_source, intrinsics_table, calib_dir,
           extrinsics_source, superset, points_per_finger, step_mm, min_depth, depth_source,
           publish_interval):
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if episodes == 0 or episodes < -1:
        raise ValueError("--episodes must be a positive number or -1 (all)")
    if workers < 1 or gpus < 1:
        raise ValueError("--workers and --gpus must be >= 1")
    if points_per_finger < 1 or not step_mm > 0 or min_depth < 0 or publish_interval < 0:
        raise ValueError("--points-per-finger >= 1, --step-mm > 0, --min-depth >= 0 and "
                         "--publish-interval >= 0 are required")
    calibration.check_source(intrinsics_source, calib_dir=calib_dir, table_path=intrinsics_table)
    if extrinsics_source not in ("h5", "superset"):
        raise ValueError("--extrinsics-source is h5 or superset")
    if extrinsics_source == "superset" and not (superset and Path(superset).is_file()):
        raise ValueError("--extrinsics-source superset needs --superset FILE")
    if mode == "full":
        if depth_source not in ("zed", "stereo"):
            raise ValueError("--depth-source is zed or stereo")
        try:
            import robocurate.droid.depth  # noqa: F401
        except ImportError as exc:
            raise ValueError(f"full mode needs robocurate.droid.depth: {exc}") from None
        if depth_source == "zed":
            try:
                import pyzed.sl  # noqa: F401
            except ImportError:
                raise ValueError("--depth-source zed needs the ZED SDK (pyzed), found only in "
                                 "the ZED container; use --depth-source stereo (SGBM on the "
                                 "recordings/MP4/<serial>-stereo.mp4 files)") from None


@pipeline_flow("droid-tracks", named_by=("raw_root",), threads=16, log_prints=True)
def droid_tracks(raw_root: str, out_root: str, mode: str = "metadata", episodes: int = 10,
                 workers: int = 2, gpus: int = 1, intrinsics_source: str = "conf",
                 intrinsics_table: str | None = None, calib_dir: str | None = None,
                 extrinsics_source: str = "h5", superset: str | None = None,
                 points_per_finger: int = 480, step_mm: float = 1.0, min_depth: float = 0.1,
                 depth_source: str = "stereo", publish_full: str | None = None,
                 publish_metadata: str | None = None, skip_hub_check: bool = False,
                 publish_interval: float = 600.0, hub_endpoint: str | None = None,
                 seed: int = 0, gpu_pool: str | None = None) -> dict:
    """Contact tracks, 1 mm flow, projections, extrinsics and quality (and depth in full
    mode) for DROID raw episodes under RAW_ROOT, into OUT_ROOT/<lab>/<outcome>/<date>/<ts>/."""
    _check(mode, episodes, workers, gpus, intrinsics_source, intrinsics_table, calib_dir,
           extrinsics_source, superset, points_per_finger, step_mm, min_depth, depth_source,
           publish_interval)
    started, t0 = now_iso(), time.perf_counter()
    raw, out = Path(raw_root).resolve(), Path(out_root).resolve()
    out.mkdir(parents=True, exist_ok=True)
    logger = get_logger(pipeline="droid", root=str(raw))
    index = SupersetIndex.load(superset) if superset else None
    found, disc = discover_episodes(raw, index)
    findings = disc.to_list()
    selected = order_episodes(found, episodes)
    opts = TrackOptions(intrinsics_source=intrinsics_source, calib_dir=calib_dir,
                        intrinsics_table=intrinsics_table, extrinsics_source=extrinsics_source,
                        superset=str(Path(superset).resolve()) if superset else None,
                        points_per_finger=points_per_finger, step_mm=step_mm,
                        min_depth=min_depth, seed=seed)
    summary = {"episodes found": len(found), "episodes selected": len(selected), "mode": mode}

    publisher = _publisher(out, publish_full, publish_metadata, publish_interval, hub_endpoint,
                           nested_push)
    skipped: set[str] = set()
    if publisher is not None and not skip_hub_check:
        try:
            on_hub = _on_hub(publisher)
        except Exception as exc:  # noqa: BLE001 - a failed check means: process everything
            findings.append(_finding(out, "hub_check_failed", f"{type(exc).__name__}: {exc}",
                                     severity="warning"))
            on_hub = set()
        skipped = {e.rel for e in selected if e.rel in on_hub}
        for rel in sorted(skipped):
            findings.append(_finding(raw / rel, "already_on_hub",
                                     "skipped: already on every target repository",
                                     severity="info"))
    todo = [e for e in selected if e.rel not in skipped]
    summary["skipped (on the Hub)"] = len(skipped)
    logger.info("episodes", found=len(found), selected=len(selected), todo=len(todo))

    pool_name = gpu.gpu_pool(gpu_pool) if mode == "full" else None
    if pool_name:
        summary["gpu pool"] = pool_name
    pool.configure(workers)
    slots_key = droid_tasks.gpu_slots(uuid.uuid4().hex, gpus)
    results: dict[str, dict] = {}
    receipts: list[dict] = []
    try:
        depth = ({"source": depth_source, "min_depth": min_depth, "gpu_pool": pool_name}
                 if mode == "full" else None)
        results = _run_chains(todo, out, opts, depth, slots_key, publisher, receipts,
                              findings, logger)
        if publisher is not None:
            try:
                receipts += publisher.publish()  # what is pending, and any unfinished batch
            except Exception as exc:  # noqa: BLE001 - the queue stays for the next run
                findings.append(_finding(out / PUBLISH_QUEUE, "publish_failed",
                                         f"{type(exc).__name__}: {exc}; the queue is kept "
                                         "and resumes on the next run"))
    finally:
        pool.shutdown()
        droid_tasks.drop_gpu_slots(slots_key)
        staging = out / STAGING
        if staging.is_dir() and not any(staging.iterdir()):
            staging.rmdir()

    for r in results.values():
        findings += r.get("findings", [])
    ok = [r for r in results.values() if r.get("status") == "ok"]
    summary.update({
        "episodes ok": len(ok), "episodes failed": len(results) - len(ok),
        "episodes from cache": sum(bool(r.get("cached")) for r in results.values()),
        "frames": sum(r.get("num_frames", 0) for r in ok),
        "published batches": len(receipts), "findings": len(findings)})
    outputs = sorted(r["output"] for r in ok if r.get("output"))
    params = {"raw_root": str(raw), "mode": mode, "episodes": episodes, "workers": workers,
              "gpus": gpus, "depth_source": depth_source, "publish_full": publish_full,
              "publish_metadata": publish_metadata, "skip_hub_check": skip_hub_check,
              "publish_interval": publish_interval, "gpu_pool": pool_name, **opts.to_dict()}
    report = build_report(pipeline=f"droid tracks ({mode})", root=str(out), parameters=params,
                          started=started, seconds=time.perf_counter() - t0, summary=summary,
                          outputs=outputs, findings=findings, run_id=str(flow_run.id or ""))
    path = write_report(out, report)
    publish_report(report, key="droid-report")
    fail_on_task_failures(findings, path)
    return {"summary": summary, "report": str(path), "findings": len(findings),
            "episodes": [{k: r.get(k) for k in ("rel", "status", "output", "staging", "seconds",
                                                "cached")}
                         for r in results.values()], "receipts": receipts}


def _run_chains(todo: list[Episode], out: Path, opts: TrackOptions, depth: dict | None,
                slots_key: str, publisher, receipts: list, findings: list,
                logger) -> dict[str, dict]:
    """Drive every episode's task to its end, publishing batches as they fall due."""

    def submit(e: Episode, refresh: bool = False):
        inputs = input_files(e, opts, with_videos=depth is not None)
        t = droid_tasks.episode_chain.with_options(refresh_cache=True) if refresh \
            else droid_tasks.episode_chain
        return t.submit(e.to_dict(), e.rel, inputs, str(out), opts, depth, slots_key)

    results: dict[str, dict] = {}
    retry_at = 0.0
    active = {e.rel: (submit(e), e) for e in todo}
    with progress(len(todo), f"droid {'full' if depth else 'metadata'}",
                  key="droid-progress") as advance:
        while active:
            moved = False
            for rel, (fut, ep) in list(active.items()):
                if not fut.state.is_final():
                    continue
                moved = True
                value = fut.result(raise_on_failure=False)
                if not isinstance(value, dict):
                    value = {"rel": rel, "status": "failed", "findings": [_finding(
                        ep.path, "task_failed", f"{type(value).__name__}: {value}")]}
                elif (fut.state.name == "Cached" and value.get("output")
                        and not Path(value["output"]).is_dir()):
                    active[rel] = (submit(ep, refresh=True), ep)  # its output was deleted
                    continue
                results[rel] = {**value, "cached": fut.state.name == "Cached"}
                if value.get("output"):
                    _stage_for_publishing(publisher, value, rel, findings)
                del active[rel]
                advance()
                logger.info("episode", rel=rel, status=value["status"],
                            cached=fut.state.name == "Cached",
                            findings=len(value.get("findings", [])))
            if publisher is not None and time.monotonic() >= retry_at:
                try:
                    receipts += publisher.maybe_publish()
                except Exception as exc:  # noqa: BLE001 - retried later and at the end
                    # An unfinished batch would be retried on every pass: wait a while.
                    retry_at = time.monotonic() + max(publisher.every_s, 5.0)
                    findings.append(_finding(out / PUBLISH_QUEUE, "publish_failed",
                                             f"{type(exc).__name__}: {exc}", severity="warning"))
            if not moved:
                time.sleep(0.05)
    return results


def _stage_for_publishing(publisher, result: dict, rel: str, findings: list) -> None:
    if publisher is None:
        return
    try:
        name = queue_name(rel)
        if (publisher.queue / "pending" / name).exists():
            shutil.rmtree(publisher.queue / "pending" / name)  # a newer run's output wins
        publisher.stage(result["output"], name=name)
    except OSError as exc:
        findings.append(_finding(result["output"], "stage_failed",
                                 f"cannot queue for publishing: {exc}"))
