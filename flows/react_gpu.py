"""The React GPU step as its own flow: what runs on the GPU pool (the CUDA image).

``react-curate`` runs contact indexing in process when no GPU pool is configured, and
otherwise dispatches one run of this flow's deployment (tasks/gpu.py) and reads the
manifest it writes next to the outputs, on the shared data volume.
"""

from __future__ import annotations

from pathlib import Path

from flows.observe import collect, rerun_missing_outputs
from flows.runners import pipeline_flow
from robocurate.io.atomic import atomic_write_json
from robocurate.react.layout import DEFAULT_MODE, pt_path
from tasks import react as react_tasks


def contact_index_all(root: Path, task: str, date: str, episodes: list[str], *, mode: str,
                      device: str, gelsight_lag: int,
                      active_sensors: list[str] | None) -> list[dict]:
    futures = []
    for h5 in episodes:
        out = str(pt_path(root, task, date, h5, mode))
        futures.append((h5, react_tasks.contact_index_episode.submit(
            h5, [h5], out, device, gelsight_lag, active_sensors)))
    results = collect(futures, "react contact-index", "react-contact-progress")
    return rerun_missing_outputs(
        results, lambda r: r.get("pt") if r.get("status") == "indexed" else None,
        lambda h5: react_tasks.contact_index_episode.with_options(refresh_cache=True)(
            h5, [h5], str(pt_path(root, task, date, h5, mode)), device, gelsight_lag,
            active_sensors))


@pipeline_flow("react-contact-index", named_by=("task", "date"), threads=4)
def react_contact_index(root: str, task: str, date: str, episodes: list[str], manifest: str,
                        mode: str = DEFAULT_MODE, device: str = "auto", gelsight_lag: int = 0,
                        active_sensors: list[str] | None = None) -> dict:
    """Contact-index EPISODES (raw .h5 paths under ROOT) into processed/<mode>/...; writes
    the per-episode results to MANIFEST (JSON) for the flow that dispatched this run."""
    results = contact_index_all(Path(root), task, date, episodes, mode=mode, device=device,
                                gelsight_lag=gelsight_lag, active_sensors=active_sensors)
    atomic_write_json(manifest, results)
    return {"episodes": len(results), "manifest": manifest,
            "indexed": sum(r.get("status") == "indexed" for r in results)}
