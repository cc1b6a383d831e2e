"""Publishing tasks: preflight, plan and upload."""

from __future__ import annotations

import os

from prefect import task

from robocurate.hub import preflight as checks
from robocurate.hub import push


def resolve_token(token_block: str | None) -> str | None:
    """HF token from a Prefect Secret block, HF_TOKEN, or the huggingface_hub login.
    Never a flow parameter: parameters are stored in the API and shown in the UI."""
    if token_block:
        from prefect.blocks.system import Secret

        return Secret.load(token_block).get()
    if os.environ.get("HF_TOKEN"):
        return os.environ["HF_TOKEN"]
    from huggingface_hub import get_token

    return get_token()


def target(repo_id, repo_type, revision, private, path_in_repo) -> push.Target:
    return push.Target(repo_id=repo_id, repo_type=repo_type, revision=revision, private=private,
                       path_in_repo=path_in_repo, endpoint=os.environ.get("HF_ENDPOINT"))


@task(name="publish-preflight")
def run_preflight(folder: str, kind: str, include: list[str], exclude: list[str]) -> list[dict]:
    return checks.run_preflight(folder, kind, include, exclude)


@task(name="publish-plan", retries=1)
def plan(folder: str, tgt: push.Target, include: list[str], exclude: list[str],
         token_block: str | None) -> dict:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=tgt.endpoint, token=resolve_token(token_block))
    return push.plan_push(folder, tgt, push.remote_files(api, tgt), include, exclude)


@task(name="publish-upload")
def upload(folder: str, tgt: push.Target, include: list[str], exclude: list[str],
           commit_message: str, token_block: str | None) -> dict:
    return push.push_folder(folder, tgt, resolve_token(token_block), include=include,
                            exclude=exclude, commit_message=commit_message)
