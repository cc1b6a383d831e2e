"""The gated push flow: preflight -> approval -> upload -> receipt."""

from __future__ import annotations

import time
from pathlib import Path

from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import deployment, flow_run
from prefect.states import Failed

from flows.runners import pipeline_flow
from robocurate.io.atomic import atomic_write_json
from robocurate.log import get_logger
from robocurate.report import now_iso
from tasks import publish as tasks

RECEIPT_NAME = "robocurate-push-receipt.json"
# Local bookkeeping never goes to the Hub.
ALWAYS_EXCLUDED = [RECEIPT_NAME, "**/.*.robocurate-tmp", ".*.robocurate-tmp"]


class PreflightFailed(RuntimeError):
    pass


class Approval(RunInput):
    approve: bool = False
    notes: str = ""


def preflight_markdown(results: list[dict], plan: dict | None = None) -> str:
    lines = ["# Publish preflight", "", "| check | result | reason |", "|---|---|---|"]
    for r in results:
        lines.append(f"| {r['name']} | {'pass' if r['passed'] else 'FAIL'} | {r['reason']} |")
        lines += [f"|  |  | `{p}` |" for p in r["paths"][:20]]
    if plan:
        lines += ["", f"## Upload plan for `{plan['repo_id']}` ({plan['repo_type']}, "
                  f"{plan['revision']})", "",
                  f"{plan['upload_files']} files to send ({plan['upload_bytes']:,} bytes), "
                  f"{plan['skip_files']} already on the remote with the same content.", "",
                  "| path | size | LFS | action |", "|---|---|---|---|"]
        lines += [f"| {f['path']} | {f['size']:,} | {'yes' if f['lfs'] else 'no'} | "
                  f"{f['action']} |" for f in plan["files"][:500]]
    return "\n".join(lines) + "\n"


@pipeline_flow("publish", named_by=("repo_id",))
def publish(folder: str, repo_id: str, repo_type: str = "dataset", revision: str = "main",
            private: bool = False, path_in_repo: str = ".", include: list[str] = [],
            exclude: list[str] = [], preflight: str = "generic", approve: bool = False,
            dry_run: bool = False, commit_message: str = "Upload with robocurate",
            token_block: str | None = None, approval_timeout_s: int = 3600) -> dict:
    """Publish FOLDER to a Hub repository once preflight passes and an operator approves."""
    logger = get_logger(pipeline="publish", repo_id=repo_id)
    folder_path = Path(folder).resolve()
    exclude = list(exclude) + ALWAYS_EXCLUDED
    results = tasks.run_preflight(str(folder_path), preflight, list(include), exclude)
    failed = [r for r in results if not r["passed"]]
    if failed:
        create_markdown_artifact(preflight_markdown(results), key="publish-preflight",
                                 description="preflight failed: nothing was sent")
        message = "preflight failed, nothing was sent:\n" + "\n".join(
            f"- {r['name']}: {r['reason']}" + "".join(f"\n    {p}" for p in r["paths"][:20])
            for r in failed)
        # A Failed state rather than a raise: the run ends Failed with the reasons, and
        # callers still get PreflightFailed, but no traceback is logged for a data verdict.
        return Failed(message=message, data=PreflightFailed(message))
    tgt = tasks.target(repo_id, repo_type, revision, private, path_in_repo)
    plan = tasks.plan(str(folder_path), tgt, list(include), exclude, token_block)
    summary = preflight_markdown(results, plan)
    create_markdown_artifact(summary, key="publish-plan", description=f"plan for {repo_id}")
    if dry_run:
        return {"status": "dry-run", "preflight": results, "plan": plan}

    if not approve:
        if deployment.id:  # on a server: an operator approves in the UI
            logger.info("waiting for approval", timeout_s=approval_timeout_s)
            try:
                answer = pause_flow_run(
                    wait_for_input=Approval.with_initial_data(description=summary),
                    timeout=approval_timeout_s)
            except FlowPauseTimeout:
                logger.warning("approval timed out", timeout_s=approval_timeout_s)
                return {"status": "not-approved", "reason": "approval timed out", "plan": plan}
            approve = bool(answer and answer.approve)
        if not approve:
            return {"status": "not-approved", "reason": "not approved (pass --approve from "
                    "the command line, or approve the paused run in the UI)", "plan": plan}

    started, t0 = now_iso(), time.perf_counter()
    receipt = tasks.upload(str(folder_path), tgt, list(include), exclude, commit_message,
                           token_block)
    receipt.update(started=started, finished=now_iso(), seconds=round(time.perf_counter() - t0, 3),
                   flow_run_id=str(flow_run.id or ""))
    atomic_write_json(folder_path / RECEIPT_NAME, receipt)
    create_markdown_artifact(
        f"# Pushed to `{repo_id}`\n\n{receipt['sent']['files']} files, "
        f"{receipt['sent']['bytes']:,} bytes in {len(receipt['commits'])} commits; "
        f"{len(receipt['skipped'])} files already present.\n\n" + "\n".join(
            f"- commit `{c['oid']}`: {c['files']} files" for c in receipt["commits"]),
        key="publish-receipt", description=f"push receipt for {repo_id}")
    logger.info("pushed", files=receipt["sent"]["files"], bytes=receipt["sent"]["bytes"],
                commits=len(receipt["commits"]))
    return {"status": "pushed", "receipt": receipt, "receipt_path": str(folder_path / RECEIPT_NAME)}
