"""The content-hash cache policy under a real Prefect engine."""

import shutil

import pytest
from prefect import flow, task

from tasks.cache import ContentHash, settles_in_place

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]

CALLS = {"read": 0, "rewrite": 0}


@task(cache_policy=ContentHash(files="inputs", ignore=("path",)), persist_result=True)
def count_bytes(path: str, inputs: list[str], factor: int) -> int:
    CALLS["read"] += 1
    with open(path, "rb") as f:
        return len(f.read()) * factor


@task(cache_policy=ContentHash(files="inputs", in_place="path"), persist_result=True)
@settles_in_place
def append_marker(path: str, inputs: list[str]) -> str:
    """Idempotent in-place edit: adds a marker line once."""
    CALLS["rewrite"] += 1
    with open(path, "r+") as f:
        text = f.read()
        if not text.endswith("processed\n"):
            f.write("processed\n")
    return "ok"


@flow
def read_flow(path: str, factor: int = 1):
    state = count_bytes(path, [path], factor, return_state=True)
    return state.name, state.result()


@flow
def rewrite_flow(path: str):
    return append_marker(path, [path], return_state=True).name


def test_changed_bytes_invalidate_copies_hit_parameters_count(tmp_path):
    f = tmp_path / "data.bin"
    f.write_bytes(b"a" * 10)
    assert read_flow(str(f)) == ("Completed", 10)
    assert read_flow(str(f)) == ("Cached", 10)
    f.write_bytes(b"b" * 10)  # same size, same path, new content
    assert read_flow(str(f)) == ("Completed", 10)
    copy = tmp_path / "elsewhere" / "data.bin"
    copy.parent.mkdir()
    shutil.copyfile(f, copy)
    assert read_flow(str(copy)) == ("Cached", 10)
    assert read_flow(str(copy), factor=2) == ("Completed", 20)


def test_in_place_edit_settles_to_a_cache_hit(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("raw\n")
    assert rewrite_flow(str(f)) == "Completed"
    assert f.read_text() == "raw\nprocessed\n"
    calls = CALLS["rewrite"]
    assert rewrite_flow(str(f)) == "Cached"  # the processed file maps to its origin
    assert CALLS["rewrite"] == calls
    # A copy of the processed file is already settled; a copy of a raw one is not.
    done_copy = tmp_path / "done" / "notes.txt"
    done_copy.parent.mkdir()
    shutil.copyfile(f, done_copy)
    assert rewrite_flow(str(done_copy)) == "Cached"
    raw_copy = tmp_path / "raw" / "notes.txt"
    raw_copy.parent.mkdir()
    raw_copy.write_text("raw\n")
    assert rewrite_flow(str(raw_copy)) == "Completed"
    assert raw_copy.read_text() == "raw\nprocessed\n"
    f.write_text("new raw\n")
    assert rewrite_flow(str(f)) == "Completed"
    assert rewrite_flow(str(f)) == "Cached"
