"""What a fresh Prefect server needs before ``prefect deploy --all``: work pools, GPU
concurrency limits and the Hugging Face token block. Idempotent: re-running updates what
exists to the requested settings and creates what is missing.

- ``robocurate-cpu``: process pool (or docker with the CPU image) for every CPU flow.
- ``robocurate-gpu``: docker pool whose base job template (deployments/gpu-job-template.json)
  requests the NVIDIA devices, shared memory and the /data volume at the same path as on
  the CPU side. Its pool concurrency = ``gpu_slots`` (one GPU flow run per GPU; each run
  gets its own container). ``--gpu-pool-type process`` makes it a process pool, for a GPU
  host without Docker (and for tests, where a process pool stands in for it).
- tag concurrency limit ``gpu`` = ``gpu_slots``: GPU tasks carry the ``gpu`` tag, so no
  more than that many run at once across the server, whichever pool they run in.
- Secret block ``hf-token`` from $HF_TOKEN when asked (the push flow's ``token_block``).
- Remote-file-system block ``robocurate-storage`` when ROBOCURATE_STORAGE is an fsspec URL
  (flows/storage.py): where every worker's results and cache records go.
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GPU_TEMPLATE = REPO / "deployments" / "gpu-job-template.json"
CPU_POOL, GPU_POOL, GPU_TAG, TOKEN_BLOCK = "robocurate-cpu", "robocurate-gpu", "gpu", "hf-token"


def default_template(pool_type: str) -> dict:
    if pool_type == "process":
        from prefect.workers.process import ProcessWorker

        return ProcessWorker.get_default_base_job_template()
    if pool_type == "docker":
        from prefect_docker.worker import DockerWorker

        return DockerWorker.get_default_base_job_template()
    raise ValueError(f"unsupported pool type {pool_type!r} (process or docker)")


def gpu_template(pool_type: str) -> dict:
    if pool_type == "docker":
        return json.loads(GPU_TEMPLATE.read_text())
    return default_template(pool_type)


def _ensure_pool(client, name: str, pool_type: str, template: dict, limit: int | None,
                 description: str) -> str:
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    try:
        existing = client.read_work_pool(name)
    except ObjectNotFound:
        client.create_work_pool(WorkPoolCreate(
            name=name, type=pool_type, base_job_template=template, concurrency_limit=limit,
            description=description))
        return f"created work pool {name} ({pool_type})"
    if existing.type != pool_type:
        raise ValueError(f"work pool {name} exists with type {existing.type}, not {pool_type}; "
                         f"delete it (prefect work-pool delete {name}) or keep its type")
    client.update_work_pool(name, WorkPoolUpdate(
        base_job_template=template, concurrency_limit=limit, description=description))
    return f"updated work pool {name} ({pool_type})"


def _ensure_tag_limit(client, tag: str, limit: int) -> str:
    # create_concurrency_limit upserts by tag on the server.
    client.create_concurrency_limit(tag=tag, concurrency_limit=limit)
    return f"concurrency limit tag:{tag} = {limit}"


def setup(*, gpu_slots: int = 1, cpu_pool_type: str = "process",
          gpu_pool_type: str = "docker", hf_token: str | None = None) -> list[str]:
    """Create or update pools, limits and blocks on the server PREFECT_API_URL names."""
    from prefect.client.orchestration import get_client

    from flows.storage import save_storage_block

    if gpu_slots < 1:
        raise ValueError("gpu_slots must be at least 1")
    done = []
    with get_client(sync_client=True) as client:
        done.append(_ensure_pool(client, CPU_POOL, cpu_pool_type,
                                 default_template(cpu_pool_type), None,
                                 "robocurate CPU flows"))
        done.append(_ensure_pool(client, GPU_POOL, gpu_pool_type, gpu_template(gpu_pool_type),
                                 gpu_slots, "robocurate GPU steps (contact indexing, depth)"))
        done.append(_ensure_tag_limit(client, GPU_TAG, gpu_slots))
    stored = save_storage_block()
    if stored:
        done.append(stored)
    if hf_token:
        from prefect.blocks.system import Secret

        Secret(value=hf_token).save(TOKEN_BLOCK, overwrite=True)
        done.append(f"secret block {TOKEN_BLOCK}")
    return done
