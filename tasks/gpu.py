"""GPU steps on a GPU work pool: a run of the GPU flow's deployment, awaited.

Without a GPU pool (the embedded default) flows run their GPU tasks in process. With
``--gpu-pool NAME`` (or ROBOCURATE_GPU_POOL) the step becomes one run of the deployment of
the GPU flow that lives on that pool (e.g. ``react-contact-index`` on ``robocurate-gpu``,
a docker pool with the CUDA image); the parent waits for it and reads the manifest the
child wrote to the shared volume (Prefect returns run metadata, not values).

The dispatch is itself a cached, retried task: a retried parent re-uses a GPU step that
succeeded and launches a fresh child for one that failed (no idempotency key: the server
would hand back the failed child).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from prefect import task

from tasks.cache import ContentHash


class GpuRunFailed(RuntimeError):
    """The GPU flow run did not complete; the message links its state and logs."""


def gpu_pool(explicit: str | None = None) -> str | None:
    return explicit or os.environ.get("ROBOCURATE_GPU_POOL") or None


def find_deployment(flow_name: str, pool: str):
    """The deployment of ``flow_name`` on work pool ``pool`` (ValueError when none)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, WorkPoolFilter, \
        WorkPoolFilterName

    with get_client(sync_client=True) as client:
        found = client.read_deployments(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])))
    if not found:
        raise ValueError(f"no deployment of flow {flow_name!r} on work pool {pool!r}: deploy it "
                         f"(prefect deploy --all) or run without --gpu-pool")
    return found[0]


def _run_url(run_id) -> str:
    from prefect.settings import PREFECT_UI_URL

    base = PREFECT_UI_URL.value()
    return f"{base}/runs/flow-run/{run_id}" if base else f"flow run {run_id}"


@task(name="gpu-dispatch", task_run_name="gpu:{flow_name}@{pool}",
      cache_policy=ContentHash(files="inputs"), retries=1, retry_delay_seconds=10,
      persist_result=True, cache_result_in_memory=False)
def dispatch(flow_name: str, pool: str, parameters: dict, inputs: list[str],
             manifest: str) -> dict:
    """Run ``flow_name``'s deployment on ``pool`` with ``parameters`` (which must tell the
    child to write ``manifest``), wait for it and return that manifest."""
    from prefect.deployments import run_deployment

    deployment = find_deployment(flow_name, pool)
    Path(manifest).unlink(missing_ok=True)  # never read a stale one
    run = run_deployment(deployment.id, parameters=parameters, timeout=None, poll_interval=2,
                         as_subflow=True)
    state = run.state
    if state is None or not state.is_completed():
        name = state.name if state else "unknown"
        message = (state.message or "") if state else ""
        raise GpuRunFailed(f"GPU run {run.name!r} of {flow_name} on pool {pool} ended {name}"
                           f"{': ' + message if message else ''}; logs: {_run_url(run.id)}")
    try:
        return json.loads(Path(manifest).read_text())
    except (OSError, ValueError) as exc:
        raise GpuRunFailed(f"GPU run {run.name!r} completed but its manifest {manifest} is "
                           f"unreadable ({exc}); is the data volume shared at the same path? "
                           f"logs: {_run_url(run.id)}") from exc
