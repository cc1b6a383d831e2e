"""React dataset figures: valid PNGs from a few dates, a markdown snippet, findings on no data."""

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robocurate.react.card import BAD_FRAMES
from robocurate.react.figures import FIGURE_NAMES, figures_markdown, make_figures

TASK = "motherboard"
DATES = ["2026-05-11", "2026-05-19", "2026-06-01"]


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    rng = np.random.default_rng(0)
    episodes = {}
    for d, date in enumerate(DATES):
        for e in range(3):
            n = 90 + 30 * e
            pt = r / "processed/mode1_v1" / TASK / date / f"episode_{e:03d}.pt"
            pt.parent.mkdir(parents=True, exist_ok=True)
            mixed = (rng.random((2, n)) * 0.9).astype(np.float32)
            torch.save({"tactile_left_mixed": torch.from_numpy(mixed[0]),
                        "tactile_right_mixed": torch.from_numpy(mixed[1])}, pt)
            episodes[f"{date}/episode_{e:03d}"] = {
                "n_frames": n, "intensity_spikes": [[0, 6]] if e == 0 else [],
                "pose_teleports_L": [[10, 17]] if d == 1 else [], "pose_teleports_R": [],
                "ot_loss_L": [[20, 20 + 10 * e]], "ot_loss_R": [],
                "total_bad_frames": 7 * (e == 0) + 8 * (d == 1) + 10 * e + 1}
    (r / BAD_FRAMES).parent.mkdir(parents=True, exist_ok=True)
    (r / BAD_FRAMES).write_text(json.dumps({"episodes": episodes}))
    return r


def test_figures_are_valid_pngs(root):
    out = make_figures(root)
    assert out["skipped"] == [] and out["findings"] == []
    assert [Path(p).name for p in out["paths"]] == list(FIGURE_NAMES.values())
    for p in out["paths"]:
        assert Path(p).parent == root / "figures/dataset_figures"
        with Image.open(p) as im:
            im.verify()
        with Image.open(p) as im:
            assert im.format == "PNG" and im.width >= 400 and im.height >= 300
            # Not a blank canvas: bars, histograms and text drew something.
            assert len(np.unique(np.asarray(im.convert("L")))) > 10
    assert not list((root / "figures/dataset_figures").glob(".*tmp"))  # atomic writes


def test_markdown_embeds_every_figure(root):
    out = make_figures(root)
    images = re.findall(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", out["markdown"])
    assert len(images) == 3
    for data, path in zip(images, out["paths"]):
        assert base64.b64decode(data) == Path(path).read_bytes()
    linked = figures_markdown(out["paths"], root=root, inline=False)
    assert "![failure modes per date](figures/dataset_figures/failure_modes_per_date.png)" \
        in linked


def test_many_episodes_and_a_bad_pt(root):
    bad = root / "processed/mode1_v1" / TASK / DATES[0] / "episode_009.pt"
    bad.write_bytes(b"\0" * 10)
    eps = json.loads((root / BAD_FRAMES).read_text())["episodes"]
    for i in range(80):  # beyond 60 episodes the episode names are dropped from the axis
        eps[f"2026-07-01/episode_{i:03d}"] = {"n_frames": 100, "ot_loss_L": [[0, i % 7]],
                                              "total_bad_frames": i % 7 + 1}
    (root / BAD_FRAMES).write_text(json.dumps({"episodes": eps}))
    out = make_figures(root)
    assert len(out["paths"]) == 3
    assert [(f["rule"], f["path"]) for f in out["findings"]] == [("unreadable_pt", str(bad))]


def test_no_inputs_skip_with_findings(tmp_path):
    out = make_figures(tmp_path)
    assert out["paths"] == [] and set(out["skipped"]) == set(FIGURE_NAMES)
    assert {f["rule"] for f in out["findings"]} == {"figure_skipped"}
    assert all(f["severity"] == "warning" for f in out["findings"])


def test_malformed_bad_frames_is_a_finding(root):
    (root / BAD_FRAMES).write_text("{not json")
    out = make_figures(root)
    assert [Path(p).name for p in out["paths"]] == ["contact_time_distribution.png"]
    assert ("unreadable_json", str(root / BAD_FRAMES)) in {(f["rule"], f["path"])
                                                          for f in out["findings"]}
