"""Test-session set-up: robocurate's and Prefect's state in a temporary directory.

Prefect reads its settings at import, and cache records live under PREFECT_HOME even
inside the test harness, so both homes are set here, before anything imports prefect;
otherwise cache hits would leak between test sessions.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

_STATE = Path(tempfile.mkdtemp(prefix="robocurate-tests-"))
os.environ["ROBOCURATE_HOME"] = str(_STATE / "robocurate")
os.environ["PREFECT_HOME"] = str(_STATE / "prefect")
os.environ.pop("PREFECT_API_URL", None)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "true")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def state_dir():
    return _STATE


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_STATE, ignore_errors=True)


# The (camera, object) pairs MolmoSpaces' process_data.sh checks by default.
MOLMO_VISIBILITY = [("droid_shoulder_light_randomization", "pickup_obj"),
                    ("droid_shoulder_light_randomization", "place_receptacle")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def prefect_server(tmp_path):
    """URL of a fresh `prefect server start` on a free loopback port."""
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "server-home"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false"}
    (tmp_path / "server-home").mkdir()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
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


