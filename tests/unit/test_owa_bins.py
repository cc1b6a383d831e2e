"""Stage 2: fixed-rate bins from hand-made events."""

import pytest

from robocurate.owa.bins import aggregate_events_to_bins, build_binned_dataset

MS = 1_000_000
T0 = 1_000 * 10**9


def ev(topic, ms, tag=None):
    return {"topic": topic, "timestamp_ns": T0 + ms * MS, "episode_path": "/r/a.mcap",
            "mcap_message": (tag or f"{topic}@{ms}").encode()}


EVENTS = [
    ev("mouse", 0), ev("window", 10), ev("keyboard", 40),        # bin 0: before any screen
    ev("screen", 120), ev("screen", 180), ev("mouse", 150),       # bin 1: latest screen wins
    # bin 2, 3: nothing -> carried screen, no actions
    ev("keyboard/state", 420), ev("mouse/raw", 430),              # bin 4: prefixes count
    ev("screen", 599), ev("keyboard", 600),                        # bin 5 (600 ms starts it)
]


def test_bins_carry_the_screen_and_collect_actions():
    shuffled = EVENTS[::-1]  # any order in, sorted inside
    bins = list(aggregate_events_to_bins(shuffled, fps=10))
    assert [b["bin_idx"] for b in bins] == [0, 1, 2, 3, 4, 5, 6]
    assert [b["timestamp_ns"] for b in bins] == [T0 + k * 100 * MS for k in range(7)]
    assert bins[0]["state"] == [] and bins[0]["actions"] == [b"mouse@0", b"keyboard@40"]
    assert bins[1]["state"] == [b"screen@180"] and bins[1]["actions"] == [b"mouse@150"]
    assert bins[2] == {"episode_path": "/r/a.mcap", "bin_idx": 2, "timestamp_ns": T0 + 200 * MS,
                       "state": [b"screen@180"], "actions": []}
    assert bins[4]["actions"] == [b"keyboard/state@420", b"mouse/raw@430"]
    assert bins[5]["state"] == [b"screen@599"] and bins[5]["actions"] == []
    assert bins[6]["actions"] == [b"keyboard@600"]  # the last event gets its bin


def test_filter_empty_actions_keeps_the_bin_numbering():
    bins = list(aggregate_events_to_bins(EVENTS, fps=10, filter_empty_actions=True))
    assert [b["bin_idx"] for b in bins] == [0, 1, 4, 6]
    assert bins[2]["state"] == [b"screen@180"]  # carried through the skipped bins
    assert bins[3]["state"] == [b"screen@599"]


def test_fps_and_ties():
    same = [ev("screen", 0, "s1"), ev("screen", 0, "s2"), ev("mouse", 0)]
    bins = list(aggregate_events_to_bins(same, fps=3))
    assert len(bins) == 1 and bins[0]["state"] == [b"s2"]  # stable: file order on ties
    assert list(aggregate_events_to_bins([], fps=10)) == []
    with pytest.raises(ValueError):
        list(aggregate_events_to_bins(EVENTS, fps=0))


def test_binned_dataset_from_an_interleaved_event_dataset(tmp_path):
    from datasets import Dataset, DatasetDict, load_from_disk

    other = [dict(e, episode_path="/r/b.mcap") for e in EVENTS[:5]]
    rows = [x for pair in zip(EVENTS[::-1], other + [None] * 5) for x in pair if x]
    columns = {k: [r[k] for r in rows] for k in ("episode_path", "topic", "timestamp_ns",
                                                   "mcap_message")}
    columns["message_type"] = ["desktop/X"] * len(rows)
    DatasetDict({"train": Dataset.from_dict(columns),
                 "test": Dataset.from_dict({k: v[:0] for k, v in columns.items()})}
                ).save_to_disk(str(tmp_path / "events"), num_shards={"test": 1})
    result = build_binned_dataset(tmp_path / "events", tmp_path / "bins", fps=10)
    out = load_from_disk(str(tmp_path / "bins"))
    expected = (list(aggregate_events_to_bins(EVENTS, fps=10))
                + list(aggregate_events_to_bins(other, fps=10)))
    assert out["train"].to_list() == expected
    assert len(out["test"]) == 0
    assert result["summary"]["train bins"] == len(expected)
    assert str(out["train"].features["state"]) .startswith("List(Value('binary')")
    assert out["train"].features["bin_idx"].dtype == "int32"


def test_missing_or_wrong_input_is_a_clear_error(tmp_path):
    with pytest.raises(NotADirectoryError):
        build_binned_dataset(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "junk").mkdir()
    with pytest.raises(ValueError, match="not a saved event dataset"):
        build_binned_dataset(tmp_path / "junk", tmp_path / "out")
