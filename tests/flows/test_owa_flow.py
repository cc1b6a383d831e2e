"""OWA events -> bins flows on generated recordings with labelled faults."""

import json

import pytest

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]


def test_events_then_bins_report_every_bad_file(tmp_path):
    from datasets import load_from_disk

    from flows.owa import owa_bins, owa_events
    from robocurate.samples.owa import generate_owa_recordings

    manifest = generate_owa_recordings(tmp_path / "in", files=3, minutes=0.02,
                                       with_video=False, generations=("0.4",))
    result = owa_events(train_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "events"),
                        rates={"screen": 10.0}, seed=1, workers=2)
    report = json.loads((tmp_path / "events" / "robocurate-report.json").read_text())
    got = {f["path"].rsplit("/", 1)[-1]: f["rule"] for f in report["findings"]}
    assert got == {e["path"]: e["expected"]["rule"] for e in manifest["files"]
                   if not e["expected"]["ok"]}
    good = sum(e["expected"]["ok"] for e in manifest["files"])
    assert result["summary"]["train files"] + result["summary"]["test files"] == good
    events = load_from_disk(str(tmp_path / "events"))
    assert len(events["train"]) == result["summary"]["train rows"] > 0
    assert len(events["test"]) == result["summary"]["test rows"]

    bins = owa_bins(input_dir=str(tmp_path / "events"), output_dir=str(tmp_path / "bins"),
                    fps=5.0, filter_empty_actions=True)
    binned = load_from_disk(str(tmp_path / "bins"))
    assert bins["summary"]["train bins"] == len(binned["train"]) > 0
    assert all(row for row in binned["train"]["actions"])
