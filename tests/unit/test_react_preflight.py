"""React preflight: a complete small dataset passes; each broken piece fails exactly its check."""

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

import robocurate.react.preflight  # noqa: F401  (registers kind "react")
from robocurate.hub.preflight import run_preflight
from robocurate.react.card import BAD_FRAMES, BREAKDOWN, mode_frames, refresh_card
from robocurate.react.preflight import CHECKS

TASK = "motherboard"
# date -> episodes -> (frames, spikes, ot_loss_L)
PLAN = {
    "2026-05-11": {"episode_000": (40, [[3, 9]], []), "episode_001": (30, [], [[10, 19]])},
    "2026-06-01": {"episode_000": (50, [], []), "episode_002": (36, [[0, 4]], [[2, 12]])},
}
T0 = 1_700_000_000  # recordings' mtime; every output is written "later"


def _mixed(n, seed):
    rng = np.random.default_rng(seed)
    return torch.from_numpy((rng.random(n) * 0.8).astype(np.float32))


def build_dataset(root: Path) -> Path:
    episodes, n_eps, total = {}, 0, 0
    for date, eps in PLAN.items():
        for i, (ep, (n, spikes, ot)) in enumerate(eps.items()):
            h5 = root / "data" / TASK / date / f"{ep}.h5"
            h5.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(h5, "w") as f:
                f["timestamps"] = np.arange(n, dtype=np.float64) / 30
            os.utime(h5, (T0, T0))
            pt = root / "processed" / "mode1_v1" / TASK / date / f"{ep}.pt"
            pt.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"tactile_left_mixed": _mixed(n, i), "tactile_right_mixed": _mixed(n, 9 + i),
                        "timestamps": torch.arange(n, dtype=torch.float64) / 30,
                        "_contact_meta": {"active_sensors": ["left", "right"], "tau": 8.0}}, pt)
            os.utime(pt, (T0 + 100, T0 + 100))
            gif = root / "figures" / "episode_previews" / TASK / date / f"{ep}.gif"
            gif.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (200, 10, 10)).save(gif)
            entry = {"n_frames": n, "duration_s": round(n / 30, 3), "intensity_spikes": spikes,
                     "pose_teleports_L": [], "pose_teleports_R": [], "ot_loss_L": ot,
                     "ot_loss_R": []}
            entry["total_bad_frames"] = sum(mode_frames(entry).values())  # no overlap here
            entry["bad_fraction"] = round(entry["total_bad_frames"] / n, 4)
            episodes[f"{date}/{ep}"] = entry
            n_eps, total = n_eps + 1, total + n
    write_json(root / BAD_FRAMES, {"tau_intensity": 30.0, "episodes": episodes,
                                   "summary": {"n_episodes": n_eps, "total_frames": total}})
    write_breakdown(root)
    write_json(root / "tasks.json", {"tasks": {TASK: {"dates": sorted(PLAN), "per_date_notes": {
        d: {"kind": "session", "active_sensors": ["left", "right"], "note": "bimanual"}
        for d in PLAN}}}})
    (root / "README.md").write_text("---\nlicense: cc-by-4.0\n---\n# React\n\nHuman words.\n")
    refresh_card(root)
    return root


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def write_breakdown(root: Path) -> None:
    """The breakdown as the detector writes it, from the bad_frames.json on disk."""
    eps = json.loads((root / BAD_FRAMES).read_text())["episodes"]
    total = sum(e["n_frames"] for e in eps.values())
    modes = {}
    for key, e in eps.items():
        for m, n in mode_frames(e).items():
            info = modes.setdefault(m, {"frames": 0, "episodes_affected": []})
            info["frames"] += n
            if n:
                info["episodes_affected"].append(key)
    for info in modes.values():
        info["pct"] = round(100 * info["frames"] / total, 3)
    write_json(root / BREAKDOWN, {"total_frames": total, "n_episodes": len(eps), "modes": modes})


def results(root):
    return {r["name"]: r for r in run_preflight(root, kind="react")}


def failing(root):
    return {n for n, r in results(root).items() if not r["passed"]}


@pytest.fixture
def dataset(tmp_path):
    return build_dataset(tmp_path / "root")


def test_complete_dataset_passes_every_check(dataset):
    r = results(dataset)
    assert set(CHECKS) <= set(r)
    assert all(x["passed"] for x in r.values()), {n: x["reason"] for n, x in r.items()
                                                  if not x["passed"]}


def _only(root, check):
    r = results(root)
    assert failing(root) == {check}, {n: x["reason"] for n, x in r.items() if not x["passed"]}
    return r[check]


def test_missing_pt(dataset):
    (dataset / "processed/mode1_v1" / TASK / "2026-06-01/episode_002.pt").rename(
        dataset / "moved_away.bin")
    # The card reflects the data as it is now; only the missing index is wrong.
    refresh_card(dataset)
    r = _only(dataset, "react_h5_has_pt")
    assert r["paths"] == ["processed/mode1_v1/motherboard/2026-06-01/episode_002.pt "
                          "(missing; recording data/motherboard/2026-06-01/episode_002.h5)"]
    assert f"robocurate react curate {dataset} --task motherboard --date 2026-06-01 " \
           f"--stages contact-index" in r["reason"]


def test_unreadable_pt(dataset):
    pt = dataset / "processed/mode1_v1" / TASK / "2026-05-11/episode_001.pt"
    pt.write_bytes(b"not a torch file")
    os.utime(pt, (T0 + 100, T0 + 100))
    refresh_card(dataset)
    r = _only(dataset, "react_h5_has_pt")
    assert r["paths"][0].startswith("processed/mode1_v1/motherboard/2026-05-11/episode_001.pt "
                                    "(unreadable")


def test_pt_older_than_recording(dataset):
    h5 = dataset / "data" / TASK / "2026-05-11/episode_001.h5"
    os.utime(h5, (T0 + 500, T0 + 500))  # e.g. recompressed after indexing
    r = _only(dataset, "react_pt_newer_than_h5")
    assert len(r["paths"]) == 1 and "2026-05-11/episode_001.pt (older than" in r["paths"][0]
    assert "--date 2026-05-11 --stages contact-index" in r["reason"]


def test_missing_per_date_notes(dataset):
    tasks = json.loads((dataset / "tasks.json").read_text())
    del tasks["tasks"][TASK]["per_date_notes"]["2026-06-01"]
    write_json(dataset / "tasks.json", tasks)
    r = _only(dataset, "react_per_date_notes")
    assert r["paths"] == ["tasks.json: tasks.motherboard.per_date_notes.2026-06-01 (missing)"]
    assert "--date 2026-06-01 --stages metadata" in r["reason"]


def test_episode_missing_from_bad_frames(dataset):
    bad = json.loads((dataset / BAD_FRAMES).read_text())
    del bad["episodes"]["2026-06-01/episode_000"]  # a clean episode: the modes do not change
    bad["summary"] = {"n_episodes": 3, "total_frames": 106}
    write_json(dataset / BAD_FRAMES, bad)
    write_breakdown(dataset)  # the breakdown agrees with the (incomplete) file
    refresh_card(dataset)
    r = _only(dataset, "react_bad_frames_complete")
    assert r["paths"] == ["figures/dataset_figures/bad_frames.json: "
                          "episodes.2026-06-01/episode_000 (missing)"]
    assert "--date 2026-06-01 --stages detect" in r["reason"]


def test_bad_frames_entry_from_an_older_index(dataset):
    bad = json.loads((dataset / BAD_FRAMES).read_text())
    bad["episodes"]["2026-05-11/episode_000"]["n_frames"] = 41
    bad["summary"]["total_frames"] += 1
    write_json(dataset / BAD_FRAMES, bad)
    write_breakdown(dataset)
    refresh_card(dataset)
    r = _only(dataset, "react_bad_frames_complete")
    assert "episodes.2026-05-11/episode_000 (n_frames 41 but the .pt has 40 frames)" in \
        r["paths"][0]


def test_missing_gallery_gif(dataset):
    (dataset / "figures/episode_previews" / TASK / "2026-05-11/episode_000.gif").unlink()
    r = _only(dataset, "react_gallery_gifs")
    assert r["paths"] == ["figures/episode_previews/motherboard/2026-05-11/episode_000.gif "
                          "(missing)"]
    assert "--date 2026-05-11 --stages gallery" in r["reason"]


def test_gallery_file_that_is_not_a_gif(dataset):
    (dataset / "figures/episode_previews" / TASK / "2026-06-01/episode_002.gif").write_bytes(
        b"\x89PNG....")
    r = _only(dataset, "react_gallery_gifs")
    assert r["paths"] == ["figures/episode_previews/motherboard/2026-06-01/episode_002.gif "
                          "(not a GIF)"]


def test_stale_breakdown(dataset):
    bd = json.loads((dataset / BREAKDOWN).read_text())
    bd["modes"]["ot_loss"]["frames"] -= 3  # e.g. written before the last detection
    write_json(dataset / BREAKDOWN, bd)
    r = results(dataset)
    bad = {n for n, x in r.items() if not x["passed"]}
    # The card shows the breakdown's percentages, so the stale breakdown also makes the card
    # disagree unless the card was refreshed from it: refresh, then only the breakdown fails.
    refresh_card(dataset)
    r = _only(dataset, "react_breakdown_current")
    assert bad >= {"react_breakdown_current"}
    assert any(p.startswith("figures/dataset_figures/data_quality_breakdown.json: "
                            "modes.ot_loss.frames") for p in r["paths"])
    assert "--stages detect" in r["reason"]


def test_breakdown_totals_out_of_date(dataset):
    bd = json.loads((dataset / BREAKDOWN).read_text())
    bd["n_episodes"], bd["total_frames"] = 3, 120
    write_json(dataset / BREAKDOWN, bd)
    refresh_card(dataset)
    r = _only(dataset, "react_breakdown_current")
    assert {p.split(": ")[1].split(" ")[0] for p in r["paths"]} >= {"n_episodes", "total_frames"}


def test_corrupt_file_would_be_published(dataset):
    (dataset / "data" / TASK / "2026-06-01/episode_003.h5.corrupt").write_bytes(b"truncated")
    r = _only(dataset, "react_no_corrupt_files")
    assert r["paths"] == ["data/motherboard/2026-06-01/episode_003.h5.corrupt"]
    assert "--exclude '*.corrupt'" in r["reason"]
    # Leaving it out of the upload is enough.
    checks = {x["name"]: x for x in run_preflight(dataset, kind="react", exclude=["*.corrupt"])}
    assert checks["react_no_corrupt_files"]["passed"]


def test_card_out_of_date(dataset):
    readme = dataset / "README.md"
    readme.write_text(readme.read_text().replace("| episodes | 4 |", "| episodes | 3 |"))
    r = _only(dataset, "react_card_current")
    assert r["paths"] == ["README.md: episodes: card says '3', data gives '4'"]
    assert "--stages card" in r["reason"]


def test_card_without_generated_block(dataset):
    (dataset / "README.md").write_text("---\nlicense: cc-by-4.0\n---\n# React\n")
    r = _only(dataset, "react_card_current")
    assert r["paths"] == ["README.md (no At a glance block)"]


def test_no_recordings_fails_instead_of_passing(tmp_path):
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n# x\n")
    r = results(tmp_path)
    for name in ("react_h5_has_pt", "react_per_date_notes", "react_gallery_gifs"):
        assert not r[name]["passed"] and "no recordings" in r[name]["reason"]
