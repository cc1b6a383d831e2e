"""The per-file fan-out of a pipeline on a local two-worker Dask cluster (prefect-dask) and on
Prefect's process pool gives the same outputs as the default thread runner."""

import json
import os
import shutil

import pytest

from flows.runners import make_task_runner
from robocurate.molmo.options import MolmoOptions

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]

from conftest import MOLMO_VISIBILITY as VIS


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    from robocurate.samples.molmo import generate_molmo_dataset

    root = tmp_path_factory.mktemp("molmo-runners") / "split"
    generate_molmo_dataset(root, houses=2, files_per_house=2, trajs_per_file=4, seed=3)
    return root


def _run(root, runner):
    from flows.molmo import molmo_postprocess

    flow = molmo_postprocess if runner is None else molmo_postprocess.with_options(
        task_runner=runner)
    result = flow(root=str(root), options=MolmoOptions(check_visibility=VIS), workers=1)
    report = json.loads((root / "robocurate-report.json").read_text())
    index = json.loads((root / "valid_trajectory_index.json").read_text())
    return result, report, index


def _comparable(report):
    root = report["root"]
    return sorted((os.path.relpath(f["path"], root), f.get("item"), f["rule"])
                  for f in report["findings"])


@pytest.mark.parametrize("kind", ["dask", "processes"])
def test_fan_out_matches_threads(sample, tmp_path, kind):
    threads_root, other_root = tmp_path / "threads", tmp_path / kind
    shutil.copytree(sample, threads_root)
    shutil.copytree(sample, other_root)
    _, expected_report, expected_index = _run(threads_root, None)

    runner = make_task_runner(kind, workers=2)
    result, report, index = _run(other_root, runner)
    files = len(list(other_root.rglob("*.h5")))
    assert result["summary"]["files"] == expected_report["summary"]["files"] == files
    assert index == expected_index
    assert _comparable(report) == _comparable(expected_report)
    # Raw copies ran on the workers; only files processing cannot change (unreadable ones)
    # are already in their settled state and may come from the cache.
    unreadable = sum(f["status"] == "unreadable" for f in expected_report["files"])
    assert report["summary"]["cached files"] <= unreadable


def test_runner_setting(monkeypatch):
    monkeypatch.setenv("ROBOCURATE_TASK_RUNNER", "dask")
    monkeypatch.setenv("ROBOCURATE_DASK_ADDRESS", "tcp://10.0.0.5:8786")
    runner = make_task_runner()
    assert type(runner).__name__ == "DaskTaskRunner"
    assert runner.address == "tcp://10.0.0.5:8786"
    monkeypatch.setenv("ROBOCURATE_TASK_RUNNER", "nonsense")
    with pytest.raises(ValueError, match="threads, processes, dask"):
        make_task_runner()
    monkeypatch.delenv("ROBOCURATE_TASK_RUNNER")
    assert type(make_task_runner()).__name__ == "ThreadPoolTaskRunner"
    assert os.environ.get("ROBOCURATE_TASK_RUNNER") is None
