"""A deployed publish run pauses for an operator, who approves it through the API (as the
UI's Resume form does); only then is anything sent."""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
from robocurate.hub.localhub import LocalHub

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
TOKEN = "hf_approval_test_token_0123456789"


def _wait_state(api, run_id, wanted, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()
        if run["state_type"] in wanted or run["state_name"] in wanted:
            return run
        assert run["state_type"] not in ("FAILED", "CRASHED"), run["state"]
        time.sleep(1)
    raise AssertionError(f"flow run never reached {wanted}: {run['state_name']}")


def test_operator_approval_gates_the_push(prefect_server, tmp_path):
    folder = tmp_path / "dataset"
    folder.mkdir()
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# Data\n")
    (folder / "values.csv").write_text("a,b\n1,2\n")
    with LocalHub(tmp_path / "hub", token=TOKEN) as hub:
        env = {**os.environ, "PREFECT_API_URL": prefect_server, "HF_ENDPOINT": hub.url,
               "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_XET": "1", "ROBOCURATE_WORKDIR": str(REPO)}

        def prefect(*args):
            proc = subprocess.run([str(BIN / "prefect"), *args], env=env, cwd=REPO,
                                  capture_output=True, text=True, timeout=180)
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
            return proc.stdout

        prefect("work-pool", "create", "robocurate-cpu", "--type", "process")
        prefect("--no-prompt", "deploy", "--name", "publish")
        out = prefect("deployment", "run", "publish/publish", "--param", f"folder={folder}",
                      "--param", "repo_id=lab/approved")
        run_id = next(w for line in out.splitlines() if "UUID" in line for w in line.split()
                      if len(w) == 36 and w.count("-") == 4)
        worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool",
                                   "robocurate-cpu", "--run-once"], env=env, cwd=REPO,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_state(prefect_server, run_id, {"Paused", "PAUSED"})
            assert not hub.repo_exists("lab/approved", "dataset")  # nothing sent while paused
            r = httpx.post(f"{prefect_server}/flow_runs/{run_id}/resume",
                           json={"run_input": {"approve": True, "notes": "looks good"}}, timeout=10)
            assert r.status_code in (200, 201), r.text
            _wait_state(prefect_server, run_id, {"COMPLETED"})
        finally:
            worker.wait(timeout=120)
        assert set(hub.files("lab/approved", "dataset")) >= {"README.md", "values.csv"}
        assert (folder / "robocurate-push-receipt.json").is_file()
