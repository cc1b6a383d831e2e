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

    result = react_curate(root=str(tmp_path), task="motherboard", date="2026-06-01", workers=2,
                          stages=["integrity", "compress"])
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
    again = react_curate(root=str(tmp_path), task="motherboard", date="2026-06-01",
                         stages=["integrity"])
    assert again["summary"]["quarantined"] == 0  # corrupt files are no longer candidates


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    """Every stage on episodes with each detector fault, as an operator would run them."""
    from flows.react import react_curate
    from robocurate.react.calibration import write_sample_calibration
    from robocurate.samples.react import generate_react_dataset

    root = tmp_path_factory.mktemp("react-all")
    generate_react_dataset(root, episodes=1, frames=60, seed=2, height=48, width=64,
                           detector_faults=True)
    write_sample_calibration(root)
    result = react_curate(root=str(root), task="motherboard", date="2026-06-01",
                          stages=["all"], workers=2, device="cpu")
    return root, result


def _manifest(root):
    return json.loads((root / "sample_manifest.json").read_text())


def test_every_stage_writes_its_outputs(curated):
    import torch

    from robocurate.react.layout import episode_key, pt_path

    root, result = curated
    good = [f for f in _manifest(root)["files"] if f["expected_integrity"]["ok"]]
    assert result["summary"]["contact indexed"] == len(good)
    figures = root / "figures"
    for f in good:
        h5 = root / f["path"]
        pt = torch.load(pt_path(root, "motherboard", "2026-06-01", h5.name), weights_only=True)
        assert pt["_contact_meta"]["trim_offset"] == f["expected_detect"]["trim_offset"]
        stem = h5.stem
        assert (figures / "episode_previews" / "motherboard" / "2026-06-01" / f"{stem}.gif").is_file()
        assert (figures / "episode_videos" / "motherboard" / "2026-06-01" / f"{stem}.mp4").is_file()
    bad = json.loads((figures / "dataset_figures" / "bad_frames.json").read_text())
    assert set(bad["episodes"]) == {episode_key(root / f["path"]) for f in good}
    tasks = json.loads((root / "tasks.json").read_text())
    assert "2026-06-01" in tasks["tasks"]["motherboard"]["per_date_notes"]
    assert "At a glance" in (root / "README.md").read_text()
    assert list((figures / "dataset_figures").glob("*.png"))


def test_detector_faults_found(curated):
    from robocurate.react.layout import episode_key

    root, _ = curated
    bad = json.loads((root / "figures/dataset_figures/bad_frames.json").read_text())
    freeze = json.loads((root / "figures/dataset_figures/freeze_intervals.json").read_text())
    for f in _manifest(root)["files"]:
        exp = f.get("expected_detect")
        if not exp:
            continue
        key = episode_key(root / f["path"])
        entry = bad["episodes"][key]
        t = exp["trim_offset"]
        for mode in ("intensity_spikes", "pose_teleports_L", "pose_teleports_R", "ot_loss_L",
                     "ot_loss_R"):
            planted = exp["intervals_h5"].get(mode, [])
            assert bool(entry[mode]) == bool(planted), (key, mode, entry[mode])
            for a, b in planted:  # detected intervals cover the planted frames (+ padding)
                assert any(c <= a - t and b - t <= d for c, d in entry[mode]), (key, mode)
        verdicts = sorted((e["side"], e["verdict"]) for e in freeze["events"]
                          if e["episode"] == key)
        assert verdicts == sorted((e["side"], e["verdict"]) for e in exp["freeze_events"]), key


def test_clips_recorded_and_verdicts_survive_a_rerun(curated):
    from flows.react import react_curate
    from robocurate.react import quality

    root, _ = curated
    path = root / "figures/dataset_figures/freeze_intervals.json"
    events = json.loads(path.read_text())["events"]
    clipped = [e for e in events if e.get("clip")]
    assert clipped and all((root / e["clip"]).is_file() for e in clipped)
    ev = events[0]
    quality.set_verdict(path, ev["episode"], ev["id"], "keep")
    react_curate(root=str(root), task="motherboard", date="2026-06-01",
                 stages=["detect"], device="cpu")
    again = {e["id"]: e for e in json.loads(path.read_text())["events"]}
    assert again[ev["id"]]["manual_verdict"] == "keep"
    assert again[ev["id"]].get("clip") == ev.get("clip")


def test_publish_dry_run_passes_preflight(curated, tmp_path, monkeypatch):
    from flows.react import react_curate
    from robocurate.hub.localhub import LocalHub

    root, _ = curated
    with LocalHub(tmp_path / "hub", token="hf_react_test_token_0123456789") as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", "hf_react_test_token_0123456789")
        result = react_curate(root=str(root), task="motherboard", date="2026-06-01",
                              stages=["publish"], repo_id="lab/react", dry_run=True)
    assert result["publish"]["status"] == "dry-run"
    assert all(r["passed"] for r in result["publish"]["preflight"])
    planned = {p for p in json.dumps(result["publish"]["plan"]).split('"') if p.endswith(".corrupt")}
    assert not planned  # quarantined files are never published


def test_cached_result_with_deleted_output_runs_again(curated):
    from flows.react import react_curate

    root, _ = curated
    pt = next((root / "processed").rglob("episode_000.pt"))
    gif = next((root / "figures" / "episode_previews").rglob("episode_000.gif"))
    pt.unlink()
    gif.unlink()
    result = react_curate(root=str(root), task="motherboard", date="2026-06-01",
                          stages=["contact-index", "gallery"], device="cpu")
    assert pt.is_file() and gif.is_file()  # not served from the cache without its file
    assert result["summary"]["contact indexed"] == result["summary"]["passed integrity"]
