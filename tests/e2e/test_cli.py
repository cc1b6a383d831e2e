"""The robocurate command line as a user runs it (subprocesses, embedded Prefect API)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent / "robocurate"


def rc(*args, env=None, check=True):
    proc = subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _commands(group=()):
    """Every command path, discovered from the click tree."""
    from flows.cli import main

    out, stack = [], [((), main)]
    while stack:
        path, cmd = stack.pop()
        out.append(path)
        for name, sub in getattr(cmd, "commands", {}).items():
            stack.append((path + (name,), sub))
    return out


def test_every_command_has_help():
    for path in _commands():
        proc = rc(*path, "--help")
        assert "Usage:" in proc.stdout and "--help" in proc.stdout, path


def test_sample_then_postprocess_then_strict(tmp_path):
    data = tmp_path / "molmo"
    rc("sample", "molmo", data, "--houses", 1, "--files-per-house", 2, "--trajs-per-file", 4)
    proc = rc("--log-json", "molmo", "postprocess", data, "--keys", "actions", "obs/agent/qpos",
              "--check-visibility", "droid_shoulder_light_randomization", "pickup_obj",
              "--workers", 2, "--strict", check=False)
    # Planted invalid trajectories are findings: --strict turns them into exit 1.
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "CancelledError" not in proc.stderr
    summary = json.loads(proc.stdout[: proc.stdout.index("}") + 1])
    assert summary["files"] >= 2 and summary["unreadable files"] == 1
    json_lines = [json.loads(line) for line in proc.stderr.splitlines()
                  if line.startswith("{") and '"event"' in line]
    assert json_lines, "--log-json printed no JSON log line"
    for name in ("valid_trajectory_index.json", "aggregated_statistics.json",
                 "robocurate-report.json"):
        assert (data / name).is_file(), name
    agg = json.loads((data / "aggregated_statistics.json").read_text())
    assert "actions/joint_pos/arm" in agg
    # Without --strict the same findings leave the exit code at 0.
    rc("molmo", "validate", data, "--no-video")


def test_missing_root_is_a_clear_error(tmp_path):
    proc = rc("molmo", "postprocess", tmp_path / "nope", check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_demos_check_exit_code_is_that_of_a_checker(tmp_path):
    data = tmp_path / "demos"
    rc("sample", "demos", data, "--files", 1, "--demos-per-file", 3)
    clean = rc("demos", "check", data / "demos_0.hdf5")
    assert "0 errors" in clean.stdout
    faulty = rc("demos", "check", *sorted(data.glob("*.hdf5")), check=False)
    assert faulty.returncode == 1, faulty.stderr[-2000:]
    assert "ERROR   nan" in faulty.stdout and "unreadable_file" in faulty.stdout
    assert "Traceback" not in faulty.stderr


def test_demo_runs_every_pipeline(tmp_path):
    proc = rc("demo", "--out", tmp_path / "demo")
    out = proc.stdout
    for expected in ("MolmoSpaces post-processing", "Demonstrations check",
                     "Demonstration statistics", "React curation (all stages)",
                     "DROID tracks + depth", "OWA event dataset", "OWA binned dataset",
                     "Published to a local Hub"):
        assert expected in out, out
    for pipeline in ("molmo", "react", "droid", "owa-events"):
        assert (tmp_path / "demo" / pipeline / "robocurate-report.json").is_file(), pipeline
    assert list((tmp_path / "demo" / "droid").rglob("depth.mkv"))
    assert (tmp_path / "demo" / "demos" / "robocurate-push-receipt.json").is_file()
    assert "Traceback" not in proc.stderr


def test_react_sample_curate_all_then_publish_dry_run(tmp_path):
    from robocurate.hub.localhub import LocalHub

    root = tmp_path / "react"
    rc("sample", "react", root, "--episodes", "2", "--frames", "40", "--detector-faults")
    args = ["--task", "motherboard", "--date", "2026-06-01"]
    curated = rc("react", "curate", root, *args, "--stages", "all", "--device", "cpu")
    assert '"contact indexed"' in curated.stdout
    token = "hf_react_cli_token_0123456789abcdef"
    with LocalHub(tmp_path / "hub", token=token) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": token}
        ok = rc("react", "publish", root, *args, "--repo-id", "lab/react", "--dry-run", env=env)
        assert '"publish": "dry-run"' in ok.stdout
        # A recording without its contact index stops the publish and says what to run.
        next((root / "processed").rglob("episode_000.pt")).unlink()
        blocked = rc("react", "publish", root, *args, "--repo-id", "lab/react", "--dry-run",
                     env=env, check=False)
        assert blocked.returncode == 1
        assert "react_h5_has_pt" in blocked.stderr and "contact-index" in blocked.stderr
        assert "Traceback" not in blocked.stderr
