"""Stage 1: rate limiting, split, row format, bad files, real recordings."""

import json
import os
import shutil
from pathlib import Path

import orjson
import pytest
from mcap.writer import Writer

from robocurate.owa.events import (EVENT_COLUMNS, build_event_dataset, extract_episode,
                                   mcap_message_json, parse_rates, rate_limit, split_files)
from robocurate.owa.mcapread import read_messages
from robocurate.samples.owa import FAULTS, generate_owa_recordings

DATA = Path(__file__).resolve().parent.parent / "data" / "owa-mcap"
MS = 1_000_000


def _recording(path, events):
    """events: [(topic, ts, payload bytes)] written in order, current schema names."""
    types = {"screen": "desktop/ScreenCaptured", "mouse": "desktop/MouseEvent",
             "keyboard": "desktop/KeyboardEvent", "window": "desktop/WindowInfo"}
    with open(path, "wb") as f:
        w = Writer(f)
        w.start(profile="owa", library="test")
        chans = {}
        for topic, _, _ in events:
            if topic not in chans:
                sid = w.register_schema(types[topic], "jsonschema", b'{"properties":{}}')
                chans[topic] = w.register_channel(topic, "json", sid)
        for i, (topic, ts, payload) in enumerate(events):
            w.add_message(chans[topic], ts, payload, ts, i)
        w.finish()


def _screen(k):
    return b'{"utc_ns":1,"media_ref":{"uri":"v.mkv","pts_ns":%d}}' % (k * 50 * MS)


def test_rate_limit_rule():
    interval = 50 * MS  # 20 Hz
    ts = [10**18, 10**18 + 10 * MS, 10**18 + 50 * MS, 10**18 + 99 * MS, 10**18 + 100 * MS]
    assert rate_limit(ts, 20.0) == [True, False, True, False, True]
    # last_kept starts at 0: a timestamp below the interval is dropped (documented rule)
    assert rate_limit([interval - 1, interval], 20.0) == [False, True]
    assert rate_limit([], 20.0) == []


def test_every_message_considered_including_the_last(tmp_path):
    t0 = 1_700_000_000 * 10**9
    events = [("screen", t0 + k * 25 * MS, _screen(k)) for k in range(9)]  # 40 Hz, 200 ms
    events += [("keyboard", t0 + 200 * MS, b'{"event_type":"press","vk":65}')]
    _recording(tmp_path / "a.mcap", events)
    r = extract_episode(str(tmp_path / "a.mcap"), str(tmp_path / "a.arrow"),
                        ("screen", "keyboard"), {"screen": 20.0})
    assert r["ok"], r
    import pyarrow as pa

    table = pa.ipc.open_stream(str(tmp_path / "a.arrow")).read_all()
    stamps = table.column("timestamp_ns").to_pylist()
    # screens at 0, 50, 100, 150, 200 ms: the file's final screen (200 ms) is kept,
    # and so is the keyboard event that is the very last message of the file
    assert [(t - t0) // MS for t in stamps] == [0, 50, 100, 150, 200, 200]
    assert table.column("topic").to_pylist()[-1] == "keyboard"
    assert r["rows"] == 6 and r["messages"] == 10


def test_row_format_is_mcap_message_json(tmp_path):
    pydantic = pytest.importorskip("pydantic")

    class McapMessage(pydantic.BaseModel):
        topic: str
        timestamp: int
        message: bytes
        message_type: str

    for topic, ts, mt, data in read_messages(DATA / "0.4.2.mcap"):
        expected = McapMessage(topic=topic, timestamp=ts, message=data,
                               message_type=mt).model_dump_json().encode()
        assert mcap_message_json(topic, ts, data, mt) == expected
    r = extract_episode(str(DATA / "0.4.2.mcap"), str(tmp_path / "s.arrow"),
                        ("window", "screen"), {})
    assert r["ok"] and r["rows"] == 4 + 33  # every window and screen message, no limits
    import pyarrow as pa

    table = pa.ipc.open_stream(str(tmp_path / "s.arrow")).read_all()
    assert tuple(table.column_names) == EVENT_COLUMNS
    row = table.slice(0, 1).to_pylist()[0]
    msg = orjson.loads(row["mcap_message"])
    assert list(msg) == ["topic", "timestamp", "message", "message_type"]
    assert msg["timestamp"] == row["timestamp_ns"] and msg["topic"] == row["topic"]
    assert row["message_type"] == msg["message_type"]
    assert row["episode_path"] == str((DATA / "0.4.2.mcap").resolve())
    titles = [orjson.loads(orjson.loads(m)["message"]).get("title")
              for m in table.column("mcap_message").to_pylist()]
    assert "test.txt - 메모장" in titles  # UTF-8 kept as is


def test_parse_rates():
    assert parse_rates(["screen=20", "mouse=60.5"]) == {"screen": 20.0, "mouse": 60.5}
    for bad in ("screen", "screen=x", "screen=0", "=3"):
        with pytest.raises(ValueError):
            parse_rates([bad])


def _empty_files(d, n):
    d.mkdir()
    for i in range(n):
        (d / f"r{i:02d}.mcap").write_bytes(b"")
    return d


def test_split_is_seeded_and_reproducible(tmp_path):
    d = _empty_files(tmp_path / "train", 10)
    a = split_files(d, test_percent=0.2, seed=0)
    assert a == split_files(d, test_percent=0.2, seed=0)
    assert len(a["test"]) == 2 and len(a["train"]) == 8
    assert sorted(a["train"] + a["test"]) == sorted(d.glob("*.mcap"))
    others = {tuple(split_files(d, seed=s)["test"]) for s in range(1, 8)}
    assert len(others | {tuple(a["test"])}) > 1
    assert len(split_files(d, test_percent=0.01)["test"]) == 1  # max(1, int(n p))
    with pytest.raises(ValueError):
        split_files(d, test_percent=1.0)


def test_test_dir_overrides_and_overlap_is_an_error(tmp_path):
    train = _empty_files(tmp_path / "train", 3)
    test = _empty_files(tmp_path / "test", 2)
    s = split_files(train, test, test_percent=0.5, seed=3)
    assert s == {"train": sorted(train.glob("*.mcap")), "test": sorted(test.glob("*.mcap"))}
    with pytest.raises(ValueError, match="both"):
        split_files(train, train)
    os.link(train / "r00.mcap", test / "same.mcap")  # same file under another name
    with pytest.raises(ValueError, match="both"):
        split_files(train, test)


def test_empty_directory_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no \\*.mcap files"):
        build_event_dataset(tmp_path / "empty", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_files_are_findings_and_good_files_make_the_dataset(tmp_path):
    from datasets import load_from_disk

    src = tmp_path / "in"
    manifest = generate_owa_recordings(src, files=2, minutes=0.02, with_video=False,
                                       generations=("0.3",))
    test = tmp_path / "test"
    test.mkdir()
    shutil.move(src / "rec_001.mcap", test / "rec_001.mcap")
    result = build_event_dataset(src, tmp_path / "out", test_dir=test, workers=2)
    by_file = {Path(f["path"]).name: f["rule"] for f in result["findings"]
               if f["severity"] == "error"}
    expected = {e["path"]: e["expected"]["rule"] for e in manifest["files"]
                if not e["expected"]["ok"]}
    assert by_file == expected and set(expected.values()) == set(FAULTS.values())
    ds = load_from_disk(str(tmp_path / "out"))
    assert set(ds) == {"train", "test"}
    train_eps = set(ds["train"]["episode_path"])
    assert {Path(p).name for p in train_eps} == {"rec_000.mcap", "legacy_0_3.mcap"}
    assert {Path(p).name for p in ds["test"]["episode_path"]} == {"rec_001.mcap"}
    assert set(ds["train"]["topic"]) == {"screen", "keyboard", "mouse"}
    assert set(ds["train"]["message_type"]) == {"desktop/ScreenCaptured",
                                                "desktop/KeyboardEvent", "desktop/MouseEvent"}
    # no file is left half-read: every row's episode is a good file
    assert result["summary"]["files skipped"] == len(expected)
    assert not list(tmp_path.glob(".out.*"))  # scratch and staging removed


def test_real_recordings_rows_follow_the_documented_rules(tmp_path):
    from datasets import load_from_disk

    train, test = tmp_path / "train", tmp_path / "test"
    train.mkdir()
    test.mkdir()
    for name in ("0.3.2.mcap", "0.4.2.mcap", "old-recorder-example-65526.mcap"):
        shutil.copy(DATA / name, train / name)
    shutil.copy(DATA / "0.5.1.mcap", test / "0.5.1.mcap")
    result = build_event_dataset(train, tmp_path / "out", test_dir=test,
                                 rates={"mouse": 60.0, "screen": 20.0})
    assert result["findings"] == []
    ds = load_from_disk(str(tmp_path / "out"))
    for split, files in (("train", sorted(train.glob("*.mcap"))), ("test", [test / "0.5.1.mcap"])):
        expected = []
        for f in files:
            last = {"mouse": 0, "screen": 0}
            for topic, ts, mt, data in read_messages(f):
                if topic not in ("screen", "keyboard", "mouse"):
                    continue
                if topic in last:
                    if ts - last[topic] < int(1e9 / {"mouse": 60.0, "screen": 20.0}[topic]):
                        continue
                    last[topic] = ts
                expected.append((str(f.resolve()), topic, ts, mt,
                                 mcap_message_json(topic, ts, data, mt)))
        got = list(zip(*(ds[split][c] for c in EVENT_COLUMNS)))
        assert got == expected
    info = json.loads((tmp_path / "out" / "train" / "dataset_info.json").read_text())
    assert info["features"]["mcap_message"] == {"dtype": "binary", "_type": "Value"}


def test_a_split_left_empty_by_bad_files_still_loads(tmp_path):
    from datasets import load_from_disk

    train, test = tmp_path / "train", tmp_path / "test"
    train.mkdir()
    test.mkdir()
    shutil.copy(DATA / "0.5.1.mcap", train / "good.mcap")
    (test / "broken.mcap").write_bytes((DATA / "0.5.1.mcap").read_bytes()[:5000])
    result = build_event_dataset(train, tmp_path / "out", test_dir=test)
    assert [f["rule"] for f in result["findings"]] == ["truncated"]
    ds = load_from_disk(str(tmp_path / "out"))
    assert len(ds["test"]) == 0 and len(ds["train"]) > 0
    assert ds["test"].features == ds["train"].features
