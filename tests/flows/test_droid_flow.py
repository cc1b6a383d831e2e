"""DROID tracks flow (full mode: stereo depth too) on generated raw episodes: every fault
is a finding and the rest goes on; finished episodes are published in batches to a local
Hub (the metadata repository without depth videos), and a second run skips what is
already there."""

import json

import pytest

from robocurate.hub.localhub import LocalHub

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]
TOKEN = "hf_droidflowtoken_0123456789abcdef"


def test_tracks_flow_findings_outputs_and_batched_publishing(tmp_path, monkeypatch):
    from flows.droid import droid_tracks
    from robocurate.samples.droid import generate_droid_episodes

    raw, out = tmp_path / "raw", tmp_path / "out"
    manifest = generate_droid_episodes(raw, episodes=1, seed=21, steps=(20, 30),
                                       with_video=True, video_frames=2)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with LocalHub(tmp_path / "hub", token=TOKEN) as hub:
        params = dict(raw_root=str(raw), out_root=str(out), mode="full", episodes=-1, workers=2,
                      calib_dir=manifest["calib_dir"], points_per_finger=8,
                      publish_full="lab/droid-full", publish_metadata="lab/droid-meta",
                      publish_interval=0.0, hub_endpoint=hub.url)
        result = droid_tracks(**params)
        report = json.loads((out / "robocurate-report.json").read_text())
        rules = {(f["path"].split("/raw/")[-1], f["rule"]) for f in report["findings"]}
        status = {e["rel"]: e["status"] for e in result["episodes"]}
        for ep in manifest["episodes"]:
            assert status[ep["rel"]] == ep["expected_status"], ep
            if ep["expected_rule"]:
                assert any(r == ep["expected_rule"] and p.startswith(ep["rel"]) for p, r in rules), ep
            assert (out / ep["rel"] / "tracks.npz").is_file() == (ep["expected_status"] == "ok")
        assert not (out / ".staging").exists()  # cleaned after success; nothing half-written
        ok = [e["rel"] for e in manifest["episodes"] if e["expected_status"] == "ok"]
        assert result["summary"]["episodes ok"] == len(ok) and result["receipts"]
        full = hub.files("lab/droid-full", "dataset")
        meta = hub.files("lab/droid-meta", "dataset")
        for rel in ok:  # the nested DROID layout on both repositories
            assert f"{rel}/tracks.npz" in full and f"{rel}/quality.json" in meta
        assert any(p.endswith("/intrinsics.json") for p in meta)
        clean = next(e for e in manifest["episodes"] if e["fault"] is None)
        depth = [f"{clean['rel']}/recordings/{v['serial']}/depth.mkv" for v in clean["videos"]]
        assert all(d in full and d not in meta for d in depth)
        q = json.loads((out / clean["rel"] / "quality.json").read_text())
        for v in clean["videos"]:
            cam = q["depth"]["cameras"][v["serial"]]
            assert cam["frames"] == 2 and (out / clean["rel"] / cam["depth"]).is_file()

        again = droid_tracks(**params)
        assert again["summary"]["skipped (on the Hub)"] == len(ok)
        assert again["summary"]["episodes ok"] == 0 and again["receipts"] == []
