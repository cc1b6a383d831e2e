"""React per-event QA clips: selection by length and kind, window, red circling, manifest."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robocurate.react.clips import (clip_window, clips_manifest_path, events_from_bad_frames,
                                    select_events, write_event_clips)
from robocurate.react.panel import gel_tile_origin
from robocurate.samples.react import generate_react_dataset


def ev(length_s, kind="freeze", side="left", a=10, **kw):
    b = a + int(round(length_s * 30)) - 1
    return {"id": f"{kind}:{length_s}", "kind": kind, "side": side, "a": a, "b": b,
            "length_s": length_s, **kw}


def test_selection_by_event_length_and_kind():
    events = [ev(0.5), ev(1.0), ev(3.0), ev(5.0), ev(5.1), ev(2.0, "teleport", "R"),
              ev(2.0, "spike", None), ev(0.3, "spike", None), ev(2.0, "mystery"),
              ev(2.0, side="up")]
    picked = {e["id"]: ok for e, ok, _ in select_events(events, min_s=1, max_s=5)}
    assert picked == {"freeze:0.5": False, "freeze:1.0": True, "freeze:3.0": True,
                      "freeze:5.0": True, "freeze:5.1": False, "teleport:2.0": True,
                      "spike:2.0": True, "spike:0.3": False, "mystery:2.0": False,
                      "freeze:2.0": False}  # the last one: side "up" is no sensor
    narrow = [e["id"] for e, ok, _ in select_events(events, min_s=2.5, max_s=4) if ok]
    assert narrow == ["freeze:3.0"]
    only_freeze = [e["id"] for e, ok, _ in select_events(events, kinds=("freeze",)) if ok]
    assert "teleport:2.0" not in only_freeze and "freeze:1.0" in only_freeze
    # No length_s: (b - a + 1) / 30; no kind: a freeze (freeze_intervals.json has none).
    (e, ok, _), = select_events([{"id": "x", "side": "right", "a": 0, "b": 59}])
    assert ok
    (e, ok, why), = select_events([{"id": "y", "side": "right", "a": 0, "b": 28}])
    assert not ok and "0.967" in why


def test_events_from_bad_frames_entry():
    entry = {"intensity_spikes": [[3, 40]], "pose_teleports_L": [], "pose_teleports_R": [[5, 12]],
             "ot_loss_L": [[0, 100]]}
    evs = events_from_bad_frames("2026-06-01/episode_000", entry)
    assert [(e["kind"], e["side"], e["a"], e["b"]) for e in evs] == [
        ("teleport", "right", 5, 12), ("spike", None, 3, 40)]
    assert evs[1]["length_s"] == round(38 / 30, 3)
    assert evs[0]["id"] == "2026-06-01/episode_000:teleport:right:5-12"


def test_clip_window():
    assert clip_window(20, 30, 100, context=15, max_frames=60).tolist() == list(range(5, 46))
    w = clip_window(10, 200, 300, context=15, max_frames=60)
    assert len(w) == 60 and w[0] == 0 and w[-1] == 215
    assert clip_window(95, 120, 100, context=15, max_frames=60).tolist() == list(range(80, 100))
    assert len(clip_window(150, 160, 100, context=15, max_frames=60)) == 0


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    root = tmp_path_factory.mktemp("react")
    generate_react_dataset(root, episodes=1, frames=90, height=48, width=64)
    return root / "data" / "motherboard" / "2026-06-01"


def _gif_frames(path: Path) -> tuple[list[np.ndarray], list[int]]:
    with Image.open(path) as im:
        frames, durations = [], []
        for k in range(im.n_frames):
            im.seek(k)
            frames.append(np.asarray(im.convert("RGB")))
            durations.append(im.info["duration"])
        return frames, durations


def test_clip_circles_the_affected_sensor_during_the_event(episodes, tmp_path):
    h5 = episodes / "episode_000.h5"
    # Trimmed coordinates + trim_offset 5 -> raw frames 35..64 (1.0 s).
    event = {"id": "2026-06-01/episode_000:right:30-59", "episode": "2026-06-01/episode_000",
             "side": "right", "a": 30, "b": 59, "length_s": 1.0, "verdict": "ot_loss",
             "manual_verdict": None}
    short = dict(event, id="short", a=0, b=5, length_s=0.2)
    out = tmp_path / "clips"
    res = write_event_clips(h5, [event, short], out, trim_offset=5, projection=False)
    assert [r["selected"] for r in res] == [True, False] and res[1]["clip"] is None
    r = res[0]
    assert r["clip"] and Path(r["clip"]).parent == out and r["h5_frames"] == [35, 64]
    assert r["bytes"] == Path(r["clip"]).stat().st_size <= 8 * 1024 * 1024
    frames, durations = _gif_frames(Path(r["clip"]))
    # Window [35 - 15, 64 + 15] = 60 frames at 30 fps (GIF delays: 3 cs each).
    assert len(frames) == 60 and set(durations) == {30}
    x, y = gel_tile_origin("right", False)

    def red_frame(fr):
        px = fr[y + 120, x + 1].astype(int)  # left edge of the right sensor's framed tiles
        return px[0] > 180 and px[1] < 80 and px[2] < 80

    flags = [red_frame(f) for f in frames]
    assert flags[:15] == [False] * 15 and flags[15:45] == [True] * 30 and flags[45:] == [False] * 15
    xl, yl = gel_tile_origin("left", False)
    assert not any(f[yl + 120, xl + 1, 0] > 180 and f[yl + 120, xl + 1, 1] < 80 for f in frames)
    manifest = json.loads(clips_manifest_path(out, h5).read_text())
    assert manifest["clips"][event["id"]]["clip"] == r["clip"]
    # A re-run for another event merges into the episode's manifest.
    other = dict(event, id="second", side="left")
    write_event_clips(h5, [other], out, trim_offset=5, projection=False)
    assert set(json.loads(clips_manifest_path(out, h5).read_text())["clips"]) == {
        event["id"], "second"}


def test_raw_frame_fields_win_and_bad_inputs(episodes, tmp_path):
    h5 = episodes / "episode_000.h5"
    e = {"id": "raw", "side": "left", "a": 0, "b": 29, "_h5_a": 40, "_h5_b": 69}
    (r,) = write_event_clips(h5, [e], tmp_path, trim_offset=1000, projection=False)
    assert r["h5_frames"] == [40, 69] and r["clip"]
    out_of_range = {"id": "far", "side": "left", "a": 500, "b": 540}
    (r,) = write_event_clips(h5, [out_of_range], tmp_path / "x", projection=False)
    assert r["clip"] is None and r["findings"][-1]["rule"] == "event_out_of_range"
    (r,) = write_event_clips(episodes / "episode_001.h5", [e], tmp_path / "y")  # truncated
    assert r["clip"] is None and r["findings"][0]["rule"] == "unreadable_file"
    assert not (tmp_path / "y").exists() or not list((tmp_path / "y").glob("*.gif"))
