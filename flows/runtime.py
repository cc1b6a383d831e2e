"""Where flows run: Prefect's embedded API under a robocurate-owned home, or a server.

Must run before ``prefect`` is imported: Prefect reads these settings at import time.
"""

from __future__ import annotations

import os

from robocurate.io.digest import default_cache_dir


def prepare_environment() -> str:
    """Returns "server" when PREFECT_API_URL is set, else "embedded"."""
    env = os.environ
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("DO_NOT_TRACK", "1")
    # Cold starts of the embedded server (fresh database, migrations) exceed the 20 s default
    # on slow disks.
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    # Results must persist for content caching to survive between runs.
    env.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "true")
    if env.get("PREFECT_API_URL"):
        return "server"
    # Ad-hoc runs get their own database and cache records instead of writing into the
    # user's ~/.prefect history.
    env.setdefault("PREFECT_HOME", str(default_cache_dir() / "prefect"))
    # Prefect creates its home without parents and then fails to open its database.
    os.makedirs(env["PREFECT_HOME"], exist_ok=True)
    env.setdefault("PREFECT_SERVER_EPHEMERAL_ENABLED", "true")
    return "embedded"
