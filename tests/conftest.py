"""Test-session set-up: robocurate's and Prefect's state in a temporary directory.

Prefect reads its settings at import, and cache records live under PREFECT_HOME even
inside the test harness, so both homes are set here, before anything imports prefect;
otherwise cache hits would leak between test sessions.
"""

import os
import shutil
import tempfile
from pathlib import Path

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
