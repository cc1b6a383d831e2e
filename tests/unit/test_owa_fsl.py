"""FSLDataset: packing whole events, masks, random access, lazy images, perf line; the
event/binned transforms and the packed-dataset transform."""

from __future__ import annotations

import shutil
from pathlib import Path

import datasets
import numpy as np
import orjson
import pytest

from robocurate.owa.encoders import McapMessage
from robocurate.owa.fsl import FSLDataset, FSLStatLogger, create_packed_transform, pack_boundaries
from robocurate.owa.transforms import create_binned_dataset_transform, create_event_dataset_transform
from tests.conftest import SHARED_DATA

REPO_DATA = Path(__file__).resolve().parents[1] / "data" / "owa-mcap"


def tokenized(counts, paths=None, images=None):
    """A tokenized dataset whose event k has counts[k] tokens, all equal to k + 1."""
    paths = paths or ["ep"] * len(counts)
    images = images or [[] for _ in counts]
    return datasets.Dataset.from_dict({
        "episode_path": paths, "text": [f"[{k}]" for k in range(len(counts))],
        "token_ids": [[k + 1] * c for k, c in enumerate(counts)], "images": images,
        "total_token_count": counts})


def test_pack_boundaries_greedy_whole_events():
    starts, ends, skipped = pack_boundaries(np.array([3, 4, 2, 6, 1, 1]), 7)
    assert list(zip(starts, ends)) == [(0, 2), (2, 3), (3, 5), (5, 6)] and skipped == 0
    starts, ends, skipped = pack_boundaries(np.array([2, 9, 3]), 5)
    assert list(zip(starts, ends)) == [(0, 1), (2, 3)] and skipped == 1
    starts, ends, _ = pack_boundaries(np.array([1, 1, 1, 1]), 10, episode_starts=np.array([0, 3]))
    assert list(zip(starts, ends)) == [(0, 3), (3, 4)]


def test_items_pad_mask_and_cover_every_event_once():
    counts = [5, 3, 7, 2, 2, 8, 1]
    ds = tokenized(counts)
    fsl = FSLDataset(ds, pad_token_id=0, max_sequence_length=10, load_images=False).prepare()
    seen = []
    for k in range(len(fsl)):
        item = fsl[k]
        ids = item["input_ids"].numpy()
        n = int(item["attention_mask"].sum())
        assert ids.shape == (10,) and item["attention_mask"].shape == (10,)
        assert (item["attention_mask"].numpy()[:n] == 1).all() and (ids[n:] == 0).all()
        events = sorted(set(ids[:n].tolist()))
        seen += [e - 1 for e in events]
        assert item["texts"] == "".join(f"[{e - 1}]" for e in events)
    assert seen == list(range(len(counts)))
    assert fsl[-1]["texts"] == fsl[len(fsl) - 1]["texts"]  # random access, negative index
    with pytest.raises(IndexError):
        fsl[len(fsl)]
    assert [x["texts"] for x in fsl.take(2)] == [fsl[0]["texts"], fsl[1]["texts"]]


def test_mask_is_by_position_even_when_pad_is_a_real_token():
    fsl = FSLDataset(tokenized([3]), pad_token_id=1, max_sequence_length=5, load_images=False).prepare()
    item = fsl[0]
    assert item["input_ids"].tolist() == [1, 1, 1, 1, 1] and item["attention_mask"].tolist() == [1, 1, 1, 0, 0]


def test_episode_aligned_and_too_long_events():
    ds = tokenized([2, 2, 2, 20, 2], paths=["a", "a", "b", "b", "b"])
    fsl = FSLDataset(ds, max_sequence_length=10, load_images=False, episode_aligned=True).prepare()
    assert [fsl.sequence_rows(k) for k in range(len(fsl))] == [(0, 2), (2, 3), (4, 5)]
    assert fsl.skipped_too_long == 1
    with pytest.raises(RuntimeError, match="prepare"):
        len(FSLDataset(ds))
    with pytest.raises(ValueError, match="token_ids"):
        FSLDataset(datasets.Dataset.from_dict({"x": [1]}))


def test_stat_logger_line_format():
    clock = iter([0.0, 2.0, 4.0])
    log = FSLStatLogger(log_every=2, clock=lambda: next(clock))
    assert log.update(1, 1024, 3, 1_000_000) is None
    line = log.update(1, 1024, 2, 4_000_000)
    assert line.startswith("FSL[2] | Total: 1.0s/s, 1,024t/s, 2.5i/s, 2.5Mb/s | EMA: 1.0s/s, 1,024t/s")
    log.update(1, 1024, 0, 0)
    line = log.update(1, 1024, 0, 0)  # EMA images: 0.9 * 2.5 + 0.1 * 0
    assert line == ("FSL[4] | Total: 1.0s/s, 1,024t/s, 1.2i/s, 1.2Mb/s | "
                    "EMA: 1.0s/s, 1,024t/s, 2.2i/s, 2.2Mb/s")


@pytest.fixture
def recording(tmp_path):
    src = [REPO_DATA / "0.5.1.mcap", REPO_DATA / "0.5.1.mkv"]
    if not all(p.is_file() for p in src):
        src = [SHARED_DATA / "owa-mcap" / "test-0.5.1.mcap", SHARED_DATA / "owa-mcap" / "test-0.5.1.mkv"]
    if not all(p.is_file() for p in src):
        pytest.skip("OWA sample 0.5.1 not available")
    shutil.copy(src[0], tmp_path / "0.5.1.mcap")
    shutil.copy(src[1], tmp_path / "0.5.1.mkv")
    return tmp_path / "0.5.1.mcap"


def _event_rows(mcap: Path):
    from mcap.reader import make_reader

    with open(mcap, "rb") as f:
        return [{"episode_path": str(mcap), "topic": c.topic, "timestamp_ns": m.log_time,
                 "message_type": s.name,
                 "mcap_message": McapMessage(c.topic, m.log_time, m.data, s.name).to_json()}
                for s, c, m in make_reader(f).iter_messages(log_time_order=True)]


def test_lazy_images_from_the_video(recording):
    screens = [r for r in _event_rows(recording) if r["topic"] == "screen"][:4]
    payloads = [McapMessage.from_json(r["mcap_message"]).message.decode() for r in screens]
    ds = tokenized([70] * 4, paths=[str(recording)] * 4, images=[[p] for p in payloads])
    fsl = FSLDataset(ds, max_sequence_length=150, log_every=1).prepare()
    item = fsl[1]
    assert [im.size for im in item["images"]] == [(1025, 1017)] * 2
    assert fsl.stat_logger.last_line.startswith("FSL[1] | Total: ")
    raw = FSLDataset(ds, max_sequence_length=150, load_images=False).prepare()[0]
    assert raw["images"] == payloads[:2]
    # packed for disk, then loaded back through the training transform
    packed = fsl.to_packed_dataset()
    assert len(packed) == 2 and packed[0]["image_episode_paths"] == [str(recording)] * 2
    packed.set_transform(create_packed_transform())
    row = packed[1]
    assert row["input_ids"].shape == (150,) and int(row["attention_mask"].sum()) == 140
    assert [im.size for im in row["images"]] == [(1025, 1017)] * 2
    # missing video: an error naming it, or a placeholder when asked
    recording.with_suffix(".mkv").unlink()
    with pytest.raises(Exception, match="0.5.1.mkv"):
        FSLDataset(ds, max_sequence_length=150).prepare()[0]
    black = FSLDataset(ds, max_sequence_length=150, placeholder_images=True).prepare()[0]["images"][0]
    assert black.size == (1025, 1017) and not np.asarray(black).any()


def test_event_and_binned_transforms(recording):
    rows = _event_rows(recording)
    ds = datasets.Dataset.from_list(rows)
    ds.set_transform(create_event_dataset_transform(encoder_type="hierarchical"))
    out = ds[:]
    by_topic = {}
    for r, enc, img in zip(rows, out["encoded_event"], out["image"]):
        by_topic.setdefault(r["topic"], []).append((enc, img))
    assert all(e.startswith("<EVENT_START><TIMESTAMP>") and i is None for e, i in by_topic["keyboard"])
    assert all(e is None and i.size == (1025, 1017) for e, i in by_topic["screen"])
    assert all(e is None and i is None for e, i in by_topic["window"])
    single = create_event_dataset_transform(encoder_type="json", load_images=False)(rows[-1])
    assert single["encoded_event"].startswith('<EVENT_START>{"topic":')

    screen = next(r["mcap_message"] for r in rows if r["topic"] == "screen")
    actions = [r["mcap_message"] for r in rows if r["topic"] in ("keyboard", "mouse")][:3]
    binned = datasets.Dataset.from_list([
        {"episode_path": str(recording), "bin_idx": 0, "timestamp_ns": 0, "state": [screen], "actions": actions},
        {"episode_path": str(recording), "bin_idx": 1, "timestamp_ns": 1, "state": [], "actions": []}])
    binned.set_transform(create_binned_dataset_transform(instruction="Play", encoder_type="json"))
    b = binned[:]
    assert b["instruction"] == ["Play", "Play"]
    assert [len(x) for x in b["images"]] == [1, 0] and b["images"][0][0].size == (1025, 1017)
    assert [len(x) for x in b["encoded_events"]] == [3, 0]
    assert orjson.loads(b["encoded_events"][0][0][len("<EVENT_START>"):-len("<EVENT_END>")])["topic"] in ("keyboard", "mouse")
