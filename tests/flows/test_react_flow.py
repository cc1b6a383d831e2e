"""React integrity + compression flow on generated episodes with injected faults."""

import json

import h5py
import pytest

from robocurate.io.h5safe import dataset_fingerprints

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]


def test_integrity_quarantines_and_compression_keeps_every_value(tmp_path):
    from flows.react import react_curate
    from robocurate.samples.react import generate_react_dataset

    generate_react_dataset(tmp_path, episodes=3, frames=16, seed=4)
    manifest = json.loads((tmp_path / "sample_manifest.json").read_text())
    before = {}
    for f in manifest["files"]:
        if f["expected_integrity"]["ok"]:
            before[f["path"]] = dataset_fingerprints(tmp_path / f["path"])

    result = react_curate(root=str(tmp_path), task="motherboard", date="2026-06-01", workers=2)
    report = json.loads((tmp_path / "robocurate-report.json").read_text())
    rules = {(f["path"], f["rule"]) for f in report["findings"]}
    for f in manifest["files"]:
        path = tmp_path / f["path"]
        exp = f["expected_integrity"]
        if exp["ok"]:
            assert path.is_file()
            assert dataset_fingerprints(path) == before[f["path"]]  # values bit-exact
            with h5py.File(path, "r") as h5:
                ds = h5["realsense/cam0/color"]
                assert ds.compression == "gzip" and ds.shuffle
        else:
            assert not path.exists() and path.with_name(path.name + ".corrupt").is_file()
            assert (str(path), exp["reason"]) in rules, (f, rules)
    assert result["summary"]["quarantined"] == sum(
        not f["expected_integrity"]["ok"] for f in manifest["files"])
    again = react_curate(root=str(tmp_path), task="motherboard", date="2026-06-01")
    assert again["summary"]["quarantined"] == 0  # corrupt files are no longer candidates
