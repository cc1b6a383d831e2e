"""A platform engineer's path, end to end on a real server: `robocurate deploy setup`,
`prefect deploy --all`, a process worker, a deployment run of a real pipeline; then a run
that fails part-way is retried through the API and only the failed work runs again."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from robocurate.io.h5safe import temp_path_for

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _wait(api, run_id, terminal=("COMPLETED", "FAILED", "CRASHED", "CANCELLED"), timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()
        if run["state_type"] in terminal:
            return run
        time.sleep(1)
    raise AssertionError(f"flow run {run_id} still {run['state_name']} after {timeout}s")


def _task_runs(api, run_id) -> list[dict]:
    r = httpx.post(f"{api}/task_runs/filter", timeout=10,
                   json={"flow_runs": {"id": {"any_": [run_id]}}, "limit": 200})
    r.raise_for_status()
    return r.json()


@contextmanager
def _worker(pool: str, env: dict, log_path: Path):
    """A ``prefect worker`` on ``pool`` for the block, stopped by process group after it."""
    with open(log_path, "w") as log:
        worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", pool],
                                  env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            yield worker
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)


def _run_id(out: str) -> str:
    return next(w for line in out.splitlines() if "UUID" in line for w in line.split()
                if len(w) == 36 and w.count("-") == 4)


@pytest.fixture
def deployed(prefect_server, tmp_path):
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "ROBOCURATE_WORKDIR": str(REPO),
           "ROBOCURATE_HOME": str(tmp_path / "rc-home"),
           "ROBOCURATE_STORAGE": str(tmp_path / "shared-storage")}
    env.pop("PREFECT_HOME", None)
    env["PREFECT_HOME"] = str(tmp_path / "client-home")

    def run(*args, check=True):
        proc = subprocess.run(list(args), env=env, cwd=REPO, capture_output=True, text=True,
                              timeout=300)
        if check:
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc

    first = run(str(BIN / "robocurate"), "deploy", "setup", "--gpu-pool-type", "process")
    assert "created work pool robocurate-cpu" in first.stdout
    again = run(str(BIN / "robocurate"), "deploy", "setup", "--gpu-pool-type", "process",
                "--gpu-slots", "2")
    assert "updated work pool robocurate-gpu" in again.stdout  # idempotent
    pool = httpx.get(f"{prefect_server}/work_pools/robocurate-gpu", timeout=10).json()
    assert pool["concurrency_limit"] == 2
    run(str(BIN / "prefect"), "--no-prompt", "deploy", "--all")
    with _worker("robocurate-cpu", env, tmp_path / "worker.log"):
        yield env, run


def test_deployment_run_and_ui_retry(deployed, prefect_server, tmp_path):
    env, run = deployed
    data = tmp_path / "molmo"
    run(str(BIN / "robocurate"), "sample", "molmo", str(data), "--houses", "2",
        "--files-per-house", "2", "--trajs-per-file", "3", "--no-invalid")
    second = tmp_path / "molmo-second"
    shutil.copytree(data, second)

    out = run(str(BIN / "prefect"), "deployment", "run", "molmo-postprocess/molmo-postprocess",
              "--param", f"root={data}").stdout
    first = _wait(prefect_server, _run_id(out))
    assert first["state_type"] == "COMPLETED", first["state"]
    assert first["name"].startswith("molmo-postprocess molmo ")  # named after its dataset
    assert (data / "robocurate-report.json").is_file()
    assert list(data.rglob("*.h5"))

    # A squatter on one file's temporary path makes that file's task fail after retries.
    files = sorted(second.rglob("*.h5"))
    blocker = temp_path_for(files[0])
    blocker.mkdir()
    out = run(str(BIN / "prefect"), "deployment", "run", "molmo-postprocess/molmo-postprocess",
              "--param", f"root={second}").stdout
    run_id = _run_id(out)
    failed = _wait(prefect_server, run_id)
    assert failed["state_type"] == "FAILED", failed["state"]
    before = {t["id"] for t in _task_runs(prefect_server, run_id)}

    blocker.rmdir()
    run(str(BIN / "prefect"), "flow-run", "retry", run_id)
    retried = _wait(prefect_server, run_id)
    assert retried["state_type"] == "COMPLETED", retried["state"]
    states = sorted(t["state_name"] for t in _task_runs(prefect_server, run_id)
                    if t["id"] not in before and t["name"].endswith(".h5"))
    # Only the failed file ran again; every other file was served from the cache.
    assert states.count("Completed") == 1, states
    assert states.count("Cached") == len(files) - 1, states
    assert any((tmp_path / "shared-storage" / "results").iterdir())  # ROBOCURATE_STORAGE


def test_gpu_step_dispatched_to_the_gpu_pool(deployed, prefect_server, tmp_path):
    """A process pool stands in for the docker GPU pool: same dispatch code path."""
    env, run = deployed
    data = tmp_path / "react"
    droid_raw, droid_out = tmp_path / "droid-raw", tmp_path / "droid-out"
    run(str(BIN / "robocurate"), "sample", "react", str(data), "--episodes", "2",
        "--frames", "20", "--no-faults")
    with _worker("robocurate-gpu", env, tmp_path / "gpu-worker.log"):
        out = run(str(BIN / "prefect"), "deployment", "run", "react-curate/react-curate",
                  "--param", f"root={data}", "--param", "date=2026-06-01",
                  "--param", 'stages=["integrity", "contact-index"]',
                  "--param", "device=cpu").stdout
        parent = _wait(prefect_server, _run_id(out), timeout=300)
        assert parent["state_type"] == "COMPLETED", parent["state"]
        # DROID full mode: each episode's depth is a droid-depth run on the GPU pool.
        run(str(BIN / "robocurate"), "sample", "droid", str(droid_raw), "--episodes", "1",
            "--no-faults", "--video", "--video-frames", "2", "--steps", "20", "25")
        out = run(str(BIN / "prefect"), "deployment", "run", "droid-tracks/droid-tracks-full",
                  "--param", f"raw_root={droid_raw}", "--param", f"out_root={droid_out}",
                  "--param", f"calib_dir={droid_raw / 'calibration'}",
                  "--param", "points_per_finger=8").stdout
        droid_parent = _wait(prefect_server, _run_id(out), timeout=300)
        assert droid_parent["state_type"] == "COMPLETED", droid_parent["state"]
    pts = sorted((data / "processed" / "mode1_v1" / "motherboard" / "2026-06-01").glob("*.pt"))
    assert len(pts) == 2
    children = httpx.post(f"{prefect_server}/flow_runs/filter", timeout=10, json={
        "flow_runs": {"parent_task_run_id": {"is_null_": False}}}).json()
    child = {c["flow_id"]: c for c in children if c["work_pool_name"] == "robocurate-gpu"}
    assert len(child) == 2 and all(c["state_type"] == "COMPLETED" for c in child.values())
    depth = list(droid_out.rglob("depth.mkv"))
    assert depth and all((d.parent / "depth_meta.json").is_file() for d in depth)
    droid_report = json.loads((droid_out / "robocurate-report.json").read_text())
    assert droid_report["summary"]["gpu pool"] == "robocurate-gpu"
    assert not (droid_out / ".staging").exists()  # manifests and staging cleaned up
    report = json.loads((data / "robocurate-report.json").read_text())
    assert report["summary"]["gpu pool"] == "robocurate-gpu"
