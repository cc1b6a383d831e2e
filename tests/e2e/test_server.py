"""With PREFECT_API_URL set, a CLI run is a flow run on that (real, loopback) server."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def prefect_server(tmp_path):
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "server-home"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false"}
    (tmp_path / "server-home").mkdir()
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "prefect server exited"
            assert time.monotonic() < deadline, "prefect server did not start"
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


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
