"""React card: counters from the data, human text kept, docs/quality.md flagged on real change."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from robocurate.hub.card import BEGIN, END

from robocurate.react.card import (BAD_FRAMES, BREAKDOWN, CARD_STATE, CONTACT_KEY, REVIEW_BEGIN,
                                   REVIEW_END, card_counters_on_disk, dataset_facts,
                                   glance_counters, refresh_card)

TASK = "motherboard"


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def write_pt(root, date, ep, left, right):
    pt = root / "processed/mode1_v1" / TASK / date / f"{ep}.pt"
    pt.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"tactile_left_mixed": torch.tensor(left, dtype=torch.float32),
                "tactile_right_mixed": torch.tensor(right, dtype=torch.float32)}, pt)


def write_quality(root, total_frames, mode_frames: dict):
    """bad_frames.json with one episode per mode share, and its breakdown."""
    write_json(root / BAD_FRAMES, {"episodes": {"2026-05-11/episode_000": {
        "n_frames": total_frames, "total_bad_frames": sum(mode_frames.values()),
        "intensity_spikes": [], "ot_loss_L": []}}})
    write_json(root / BREAKDOWN, {"total_frames": total_frames, "n_episodes": 1, "modes": {
        m: {"frames": n, "pct": 100 * n / total_frames} for m, n in mode_frames.items()}})


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    # 300 frames = 10 s. Left in contact for frames 0-89 (3 s), right for 60-119 and 200-229.
    left = np.zeros(300); left[0:90] = 0.9
    right = np.zeros(300); right[60:120] = 0.5; right[200:230] = 0.41
    right[150] = 0.4  # exactly at the threshold: not contact (strictly greater)
    write_pt(r, "2026-05-11", "episode_000", left, right)
    write_quality(r, 10_000, {"gelsight_led_flicker": 100, "ot_loss": 200})
    return r


def test_counters_from_the_data(root):
    c = glance_counters(dataset_facts(root))
    assert c["episodes"] == 1 and c["frames"] == 300 and c["duration"] == "0.2 min"
    # either sensor: frames 0-119 and 200-229 = 150 frames = 5 s of 10 s
    assert c[CONTACT_KEY] == "0.1 min (50.0%)"
    # three events: 3.0 s (left), 2.0 s and 1.0 s (right)
    assert c["contact events (per sensor)"] == "3, median 2.00 s"
    assert c["bad frames (any mode)"] == "3.00%"
    assert c["bad frames: gelsight_led_flicker"] == "1.00%" and c["bad frames: ot_loss"] == "2.00%"


def test_refresh_keeps_human_text_and_updates_counters(root):
    (root / "README.md").write_text("---\nlicense: cc-by-4.0\npretty_name: React\n---\n"
                                    "# React\n\nWritten by a person.\n\n## Hardware\n\nThree D415.\n")
    out = refresh_card(root)
    text = (root / "README.md").read_text()
    assert "Written by a person." in text and "Three D415." in text
    meta = yaml.safe_load(text.split("---")[1])
    assert meta == {"license": "cc-by-4.0", "pretty_name": "React"}
    assert out["changed"] and card_counters_on_disk(root)["episodes"] == "1"
    # A second episode arrives: the counters change, the person's text does not.
    write_pt(root, "2026-06-01", "episode_000", np.zeros(600), np.zeros(600))
    out = refresh_card(root)
    text2 = (root / "README.md").read_text()
    rows = card_counters_on_disk(root)
    assert rows["episodes"] == "2" and rows["frames"] == "900" and rows["recording dates"] == "2"
    assert out["changed"]
    # Everything outside the generated block is byte-identical.
    assert text2.split(BEGIN)[0] == text.split(BEGIN)[0]
    assert text2.split(END)[1] == text.split(END)[1]
    assert not refresh_card(root)["changed"]  # nothing new: same rows


def test_new_card_has_front_matter_and_title(root):
    refresh_card(root)
    text = (root / "README.md").read_text()
    assert text.startswith("---\n") and "# React (Tactile-Visual Manipulation)" in text
    assert "processed/mode1_v1/**/episode_*.pt" in text


def _quality(root):
    p = root / "docs/quality.md"
    return p.read_text() if p.exists() else ""


def test_first_refresh_records_a_baseline_without_flagging(root):
    (root / "docs").mkdir()
    (root / "docs/quality.md").write_text("# Quality\n\nOT loss is 2%.\n")
    out = refresh_card(root)
    assert not out["review_needed"] and REVIEW_BEGIN not in _quality(root)
    state = json.loads((root / CARD_STATE).read_text())
    assert state["baseline_mode_pct"] == {"gelsight_led_flicker": 1.0, "ot_loss": 2.0}


def test_flag_on_a_new_failure_mode(root):
    (root / "docs").mkdir()
    (root / "docs/quality.md").write_text("# Quality\n\nHuman text.\n")
    refresh_card(root)
    write_quality(root, 10_000, {"gelsight_led_flicker": 100, "ot_loss": 200,
                                 "pose_teleport": 10})
    out = refresh_card(root)
    assert out["review_needed"]
    assert any("new failure mode `pose_teleport`" in r for r in out["review_reasons"])
    text = _quality(root)
    assert text.startswith(REVIEW_BEGIN) and text.endswith("# Quality\n\nHuman text.\n")
    assert [f["rule"] for f in out["findings"]] == ["quality_review_needed"]
    assert out["findings"][0]["path"].endswith("docs/quality.md")


def test_a_mode_at_zero_that_becomes_nonzero_is_new(root):
    write_quality(root, 10_000, {"gelsight_led_flicker": 100, "ot_loss": 200,
                                 "pose_teleport": 0})
    refresh_card(root)
    write_quality(root, 10_000, {"gelsight_led_flicker": 100, "ot_loss": 200,
                                 "pose_teleport": 5})
    out = refresh_card(root)
    assert out["review_needed"] and "pose_teleport" in out["review_reasons"][0]
    assert (root / "docs/quality.md").read_text().startswith(REVIEW_BEGIN)  # created


@pytest.mark.parametrize("ot_frames,flagged", [(260, True), (230, False), (140, True),
                                               (250, False)])
def test_flag_only_on_a_move_above_half_a_point(root, ot_frames, flagged):
    refresh_card(root)  # baseline ot_loss 2.00%
    write_quality(root, 10_000, {"gelsight_led_flicker": 100, "ot_loss": ot_frames})
    out = refresh_card(root)
    assert out["review_needed"] is flagged, out["review_reasons"]
    assert (REVIEW_BEGIN in _quality(root)) is flagged
    if flagged:
        assert "`ot_loss` moved 2.00% ->" in out["review_reasons"][0]


def test_small_moves_add_up_against_the_reviewed_baseline(root):
    refresh_card(root)  # 2.0%
    write_quality(root, 10_000, {"gelsight_led_flicker": 100, "ot_loss": 230})
    assert not refresh_card(root)["review_needed"]  # 2.3%
    write_quality(root, 10_000, {"gelsight_led_flicker": 100, "ot_loss": 260})
    assert refresh_card(root)["review_needed"]  # 2.6%: 0.6 from what was reviewed


def test_review_done_by_deleting_the_block_moves_the_baseline(root):
    (root / "docs").mkdir()
    (root / "docs/quality.md").write_text("# Quality\n")
    refresh_card(root)
    write_quality(root, 10_000, {"gelsight_led_flicker": 100, "ot_loss": 300})
    assert refresh_card(root)["review_needed"]
    # Re-running without a review keeps the flag (one block, not two).
    assert refresh_card(root)["review_needed"] and _quality(root).count(REVIEW_BEGIN) == 1
    # The person updates the page and deletes the block.
    (root / "docs/quality.md").write_text("# Quality\n\nOT loss is now 3%.\n")
    out = refresh_card(root)
    assert not out["review_needed"] and REVIEW_BEGIN not in _quality(root)
    assert json.loads((root / CARD_STATE).read_text())["baseline_mode_pct"]["ot_loss"] == 3.0


def test_flag_cleared_when_figures_return_within_tolerance(root):
    (root / "docs").mkdir()
    (root / "docs/quality.md").write_text("# Quality\n")
    refresh_card(root)
    write_quality(root, 10_000, {"gelsight_led_flicker": 100, "ot_loss": 300})
    assert refresh_card(root)["review_needed"]
    write_quality(root, 10_000, {"gelsight_led_flicker": 100, "ot_loss": 210})
    assert not refresh_card(root)["review_needed"]
    assert _quality(root) == "# Quality\n" and REVIEW_END not in _quality(root)


def test_bad_pt_is_a_finding_not_a_crash(root):
    bad = root / "processed/mode1_v1" / TASK / "2026-05-11/episode_001.pt"
    bad.write_bytes(b"garbage")
    out = refresh_card(root)
    assert out["counters"]["episodes"] == 1
    assert [f["rule"] for f in out["findings"]] == ["unreadable_pt"]
    assert out["findings"][0]["path"] == str(bad)


def test_without_breakdown_modes_come_from_bad_frames(root):
    (root / BREAKDOWN).unlink()
    write_json(root / BAD_FRAMES, {"episodes": {"2026-05-11/episode_000": {
        "n_frames": 200, "total_bad_frames": 12, "intensity_spikes": [[0, 5]],
        "ot_loss_L": [[3, 8]], "ot_loss_R": [[7, 10]]}}})
    c = glance_counters(dataset_facts(root))
    assert c["bad frames: gelsight_led_flicker"] == "3.00%"
    assert c["bad frames: ot_loss"] == "4.00%"  # union of [3,8] and [7,10] = 8 frames


def test_rerun_with_the_same_figures_rewrites_nothing(root):
    (root / "docs").mkdir()
    (root / "docs/quality.md").write_text("# Quality\n")
    refresh_card(root)
    write_quality(root, 10_000, {"gelsight_led_flicker": 100, "ot_loss": 300})
    refresh_card(root)
    files = [root / "docs/quality.md", root / CARD_STATE]
    before = [(p.read_bytes(), p.stat().st_mtime_ns) for p in files]
    refresh_card(root)
    assert [(p.read_bytes(), p.stat().st_mtime_ns) for p in files] == before
