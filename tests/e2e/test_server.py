"""With PREFECT_API_URL set, a CLI run is a flow run on that (real, loopback) server."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent


def test_cli_run_is_recorded_on_the_server(prefect_server, tmp_path):
    data = tmp_path / "molmo"
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    subprocess.run([str(BIN / "robocurate"), "sample", "molmo", str(data), "--houses", "1",
                    "--files-per-house", "1", "--trajs-per-file", "2", "--no-invalid"],
                   check=True, env=env, capture_output=True, timeout=120)
    proc = subprocess.run([str(BIN / "robocurate"), "molmo", "validate", str(data), "--no-video"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = httpx.post(f"{prefect_server}/flow_runs/filter", json={}, timeout=10).json()
    assert [r["state_type"] for r in runs] == ["COMPLETED"]
    flow = httpx.get(f"{prefect_server}/flows/{runs[0]['flow_id']}", timeout=10).json()
    assert flow["name"] == "molmo-postprocess"
    artifacts = httpx.post(f"{prefect_server}/artifacts/filter", json={}, timeout=10).json()
    assert {"molmo-report", "molmo-report-findings"} <= {a["key"] for a in artifacts}
