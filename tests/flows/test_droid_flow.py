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

        # Without the Hub check every finished episode is served from the cache...
        cached = droid_tracks(**{**params, "skip_hub_check": True, "publish_full": None,
                                 "publish_metadata": None})
        assert cached["summary"]["episodes from cache"] == len(manifest["episodes"])
        # ...except one whose output folder was deleted: it is built again.
        import shutil

        shutil.rmtree(out / clean["rel"])
        rebuilt = droid_tracks(**{**params, "skip_hub_check": True, "publish_full": None,
                                  "publish_metadata": None})
        assert (out / clean["rel"] / "tracks.npz").is_file()
        by_rel = {e["rel"]: e for e in rebuilt["episodes"]}
        assert by_rel[clean["rel"]]["cached"] is False


def test_failed_depth_keeps_staging_and_a_rerun_redoes_only_that_episode(tmp_path, monkeypatch):
    """A crashed depth step fails its episode's task (the run ends Failed); its staging
    folder is kept for inspection. Re-running does only that episode and then removes the
    failed attempt's folder."""
    import robocurate.droid.depth as depth_mod
    from flows.droid import droid_tracks
    from flows.observe import TasksFailed
    from robocurate.samples.droid import generate_droid_episodes

    raw, out = tmp_path / "raw", tmp_path / "out"
    manifest = generate_droid_episodes(raw, episodes=2, seed=5, steps=(20, 25),
                                       with_video=True, video_frames=2, faults=False)
    victim = manifest["episodes"][0]["rel"]
    real = depth_mod.episode_depth

    def flaky(episode_dir, out_dir, **kw):
        if str(episode_dir).endswith(victim):
            raise RuntimeError("GPU fell off the bus")
        return real(episode_dir, out_dir, **kw)

    monkeypatch.setattr(depth_mod, "episode_depth", flaky)
    params = dict(raw_root=str(raw), out_root=str(out), mode="full", episodes=-1, workers=1,
                  calib_dir=manifest["calib_dir"], points_per_finger=8)
    with pytest.raises(TasksFailed):
        droid_tracks(**params)
    report = json.loads((out / "robocurate-report.json").read_text())
    failed = [f for f in report["findings"] if f["rule"] == "task_failed"]
    assert len(failed) == 1 and "GPU fell off the bus" in failed[0]["message"]
    kept = list((out / ".staging").iterdir())
    assert len(kept) == 1 and str(kept[0]) in failed[0]["message"]
    assert not (out / victim).exists()

    monkeypatch.setattr(depth_mod, "episode_depth", real)
    again = droid_tracks(**params)
    by_rel = {e["rel"]: e for e in again["episodes"]}
    assert by_rel[victim]["cached"] is False and by_rel[victim]["status"] == "ok"
    others = [r for r in by_rel if r != victim]
    assert others and all(by_rel[r]["cached"] for r in others)
    assert (out / victim / "tracks.npz").is_file()
    assert not (out / ".staging").exists()
