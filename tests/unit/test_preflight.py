"""Preflight checks: each failure names the offending paths; nothing is sent on failure."""

import os

import pytest

from robocurate.hub.preflight import run_preflight


def _card(folder, text="---\nlicense: mit\ntags: [robotics]\n---\n# Data\n"):
    (folder / "README.md").write_text(text)


def _by_name(results):
    return {r["name"]: r for r in results}


def test_clean_folder_passes(tmp_path):
    _card(tmp_path)
    (tmp_path / "data.bin").write_bytes(b"\0" * 100)
    results = _by_name(run_preflight(tmp_path))
    assert all(r["passed"] for r in results.values()), results


def test_each_generic_failure(tmp_path):
    assert not _by_name(run_preflight(tmp_path))["folder_not_empty"]["passed"]
    (tmp_path / "x.txt").write_text("hello")
    r = _by_name(run_preflight(tmp_path))
    assert not r["dataset_card"]["passed"]
    _card(tmp_path, "# no front matter\n")
    assert "front matter" in _by_name(run_preflight(tmp_path))["dataset_card"]["reason"]
    _card(tmp_path)
    (tmp_path / ".env").write_text("A=1")
    token = "hf_" + "a" * 34
    (tmp_path / "notes.txt").write_text(f"token = {token}\n")
    os.symlink(tmp_path / "missing", tmp_path / "broken")
    os.symlink("/etc/hostname", tmp_path / "outside")
    r = _by_name(run_preflight(tmp_path))
    assert set(r["no_secrets"]["paths"]) == {".env", "notes.txt"}
    assert token not in str(r)  # a found secret is never echoed
    assert set(map(os.path.basename, r["links_inside_folder"]["paths"])) == {"broken", "outside"}


def test_unknown_kind_is_an_error(tmp_path):
    with pytest.raises(ValueError):
        run_preflight(tmp_path, kind="nope")


def test_family_checks_register_and_run(tmp_path):
    _card(tmp_path)
    (tmp_path / "x.hdf5").write_bytes(b"not hdf5")
    r = _by_name(run_preflight(tmp_path, kind="demos"))
    assert not r["demos_check_clean"]["passed"] and "unreadable_file" in r["demos_check_clean"]["paths"][0]
    r = _by_name(run_preflight(tmp_path, kind="molmo"))
    assert not r["molmo_postprocessed"]["passed"]
