"""ROBOCURATE_STORAGE: task results and cache records live where it says. An fsspec URL
goes through Prefect's RemoteFileSystem block (``memory://`` here, ``s3://`` in
production: only the fsspec driver differs)."""

import json
from pathlib import Path

import fsspec
import pytest

from flows.storage import BLOCK_SLUG, save_storage_block, shared_result_storage
from robocurate.molmo.options import MolmoOptions

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]


def _cached_files(root, storage) -> int:
    from flows.molmo import molmo_postprocess

    molmo_postprocess.with_options(result_storage=storage)(
        root=str(root), options=MolmoOptions(), stages=["validate", "stats"], workers=1)
    return json.loads((root / "robocurate-report.json").read_text())["summary"]["cached files"]


def test_fsspec_url_holds_results_and_cache_records(tmp_path, monkeypatch):
    from robocurate.samples.molmo import generate_molmo_dataset

    root = tmp_path / "split"
    generate_molmo_dataset(root, houses=1, files_per_house=2, trajs_per_file=3, seed=4)
    monkeypatch.setenv("ROBOCURATE_STORAGE", "memory://robocurate-test/shared")
    storage = shared_result_storage()
    assert storage == BLOCK_SLUG
    assert "memory://robocurate-test/shared/results" in save_storage_block()
    mem = fsspec.filesystem("memory")

    assert _cached_files(root, storage) == 0
    assert mem.find("/robocurate-test/shared/results")  # written through fsspec
    files = len(list(root.glob("**/*.h5")))
    assert files >= 2 and _cached_files(root, storage) == files
    # The cache lives in the store only: emptied, every file runs again.
    mem.rm("/robocurate-test/shared", recursive=True)
    assert _cached_files(root, storage) == 0


@pytest.mark.parametrize("prefix", ["", "file://", "local://"])
def test_paths_and_local_urls_are_local_storage(prefix, tmp_path, monkeypatch):
    monkeypatch.setenv("ROBOCURATE_STORAGE", f"{prefix}{tmp_path}/store")
    assert shared_result_storage() == Path(tmp_path, "store", "results")
    assert save_storage_block() is None  # nothing to save for a path


def test_path_storage_is_accepted_by_flows(tmp_path, monkeypatch):
    """Prefect refuses unsaved block objects as result storage; a path it takes."""
    from flows.molmo import molmo_postprocess

    monkeypatch.setenv("ROBOCURATE_STORAGE", str(tmp_path / "store"))
    molmo_postprocess.with_options(result_storage=shared_result_storage())


def test_unusable_url_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("ROBOCURATE_STORAGE", "s3://")
    with pytest.raises(ValueError, match="ROBOCURATE_STORAGE='s3://'"):
        save_storage_block()


def test_deploy_setup_saves_the_storage_block_workers_load(monkeypatch):
    from prefect.filesystems import RemoteFileSystem

    from flows.deploy_setup import setup

    monkeypatch.setenv("ROBOCURATE_STORAGE", "memory://robocurate-setup/prefix")
    done = setup(cpu_pool_type="process", gpu_pool_type="process")
    assert any(line.startswith(f"storage block {BLOCK_SLUG}") for line in done)
    loaded = RemoteFileSystem.load(BLOCK_SLUG.split("/", 1)[1])
    assert loaded.basepath == "memory://robocurate-setup/prefix/results"
