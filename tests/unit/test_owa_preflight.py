"""OWA preflight checks: a good event dataset passes; each check fails on its own."""

import shutil

import pytest

from robocurate.hub.card import write_card
from robocurate.hub.preflight import run_preflight
# Importing the module registers kind "owa" (explicitly, whatever hub.preflight imports).
from robocurate.owa.preflight import CHECKS, detect_kind


def _failing(results):
    return {r["name"] for r in results if not r["passed"]}


def _by_name(results):
    return {r["name"]: r for r in results}


def _card(folder):
    write_card(folder, title="OWA sample", counters={"recordings": 2}, license="mit")


def _build(tmp, name="events"):
    from robocurate.owa.events import build_event_dataset
    from robocurate.samples.owa import generate_owa_recordings

    generate_owa_recordings(tmp / "in", files=2, minutes=0.02, with_faults=False)
    build_event_dataset(tmp / "in", tmp / name, seed=0)
    _card(tmp / name)
    return tmp / name


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    """A valid event dataset built from generated recordings (with their videos)."""
    return _build(tmp_path_factory.mktemp("owa-preflight"))


def _resave(src, dst, make):
    """Save ``make(load_from_disk(src))`` at ``dst`` with a card, as the pipelines do (an
    empty split gets one shard: with datasets' default of none it would not load)."""
    from datasets import DatasetDict, load_from_disk

    ds = make(load_from_disk(str(src)))
    shards = ({k: 1 for k, v in ds.items() if len(v) == 0} or None
              if isinstance(ds, DatasetDict) else None)
    ds.save_to_disk(str(dst), num_shards=shards)
    _card(dst)
    return dst


def test_valid_event_and_binned_datasets_pass(events, tmp_path):
    from robocurate.owa.bins import build_binned_dataset

    results = run_preflight(events, "owa")
    assert _failing(results) == set(), results
    r = _by_name(results)
    assert set(CHECKS) <= set(r)
    assert "event dataset" in r["owa_features_documented"]["reason"]
    assert "2 readable videos" in r["owa_media_refs_resolve"]["reason"]
    # Stage 2 output: screens are in ``state``, and they resolve the same way.
    build_binned_dataset(events, tmp_path / "bins", fps=5.0)
    _card(tmp_path / "bins")
    r = _by_name(run_preflight(tmp_path / "bins", "owa"))
    assert _failing(r.values()) == set(), r
    assert "binned dataset" in r["owa_features_documented"]["reason"]
    assert "2 readable videos" in r["owa_media_refs_resolve"]["reason"]


def test_missing_or_empty_split_fails_only_the_split_check(events, tmp_path):
    from datasets import DatasetDict

    no_train = _resave(events, tmp_path / "no-train", lambda d: DatasetDict({"test": d["test"]}))
    r = _by_name(run_preflight(no_train, "owa"))
    assert _failing(r.values()) == {"owa_splits_present"}
    assert "no 'train' split" in r["owa_splits_present"]["reason"]

    empty = _resave(events, tmp_path / "empty-test", lambda d: DatasetDict(
        {"train": d["train"], "test": d["test"].select([])}))
    r = _by_name(run_preflight(empty, "owa"))
    assert _failing(r.values()) == {"owa_splits_present"}
    assert "split 'test' has no rows" in r["owa_splits_present"]["reason"]

    single = _resave(events, tmp_path / "single", lambda d: d["train"])
    r = _by_name(run_preflight(single, "owa"))
    assert _failing(r.values()) == {"owa_splits_present"}
    assert "not a DatasetDict" in r["owa_splits_present"]["reason"]


def test_wrong_features_fail_only_the_features_check(events, tmp_path):
    from datasets import Value

    retyped = _resave(events, tmp_path / "uint64",
                       lambda d: d.cast_column("timestamp_ns", Value("uint64")))
    r = _by_name(run_preflight(retyped, "owa"))
    assert _failing(r.values()) == {"owa_features_documented"}
    paths = r["owa_features_documented"]["paths"]
    assert any("'timestamp_ns' is Value('uint64'), documented as Value('int64')" in p
               for p in paths), paths
    assert {p.split(":")[0] for p in paths} == {"split 'train'", "split 'test'"}

    renamed = _resave(events, tmp_path / "renamed",
                      lambda d: d.rename_column("topic", "channel"))
    r = _by_name(run_preflight(renamed, "owa"))
    assert _failing(r.values()) == {"owa_features_documented"}
    paths = r["owa_features_documented"]["paths"]
    assert any("missing column 'topic'" in p for p in paths)
    assert any("unexpected column 'channel'" in p for p in paths)


def test_dangling_media_ref_fails_only_the_media_check(tmp_path):
    events = _build(tmp_path)
    (tmp_path / "in" / "rec_001.mkv").unlink()
    r = _by_name(run_preflight(events, "owa"))
    assert _failing(r.values()) == {"owa_media_refs_resolve"}
    media = r["owa_media_refs_resolve"]
    assert "dangle" in media["reason"] and "1 video files" in media["reason"]
    assert len(media["paths"]) == 1
    line = media["paths"][0]
    assert "rec_001.mcap" in line and "'rec_001.mkv'" in line and "missing" in line
    # A video that is there but cannot be decoded is as unusable as a missing one.
    (tmp_path / "in" / "rec_001.mkv").write_bytes(b"not a matroska file" * 10)
    media = _by_name(run_preflight(events, "owa"))["owa_media_refs_resolve"]
    assert not media["passed"] and "not a readable video" in media["paths"][0]


def test_not_a_dataset_fails_loading_and_nothing_passes_vacuously(tmp_path):
    _card(tmp_path)
    (tmp_path / "notes.txt").write_text("just some files\n")
    r = _by_name(run_preflight(tmp_path, "owa"))
    assert _failing(r.values()) == set(CHECKS)
    assert "not a dataset saved with DatasetDict.save_to_disk" in r["owa_dataset_loads"]["reason"]
    for name in CHECKS[1:]:
        assert "see owa_dataset_loads" in r[name]["reason"]


def test_cut_short_arrow_file_is_named(events, tmp_path):
    shutil.copytree(events, tmp_path / "cut")
    arrow = tmp_path / "cut" / "test" / "data-00000-of-00001.arrow"
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    r = _by_name(run_preflight(tmp_path / "cut", "owa"))
    assert _failing(r.values()) == set(CHECKS)
    assert "cut short or corrupt" in r["owa_dataset_loads"]["reason"]
    assert [p.split(" ")[0] for p in r["owa_dataset_loads"]["paths"]] == [
        "test/data-00000-of-00001.arrow"]


def test_excluded_data_file_fails_loading(events):
    r = _by_name(run_preflight(events, "owa", exclude=["train/*.arrow"]))
    assert _failing(r.values()) == {"owa_dataset_loads"}
    assert r["owa_dataset_loads"]["paths"] == ["train/data-00000-of-00001.arrow"]


def test_detect_kind_from_columns():
    assert detect_kind(["episode_path", "topic", "timestamp_ns", "message_type",
                        "mcap_message"]) == "event"
    assert detect_kind(["episode_path", "bin_idx", "timestamp_ns", "state"]) == "binned"
    assert detect_kind(["episode_path", "text", "token_ids", "images"]) == "tokenized"
    assert detect_kind(["input_ids", "attention_mask", "texts"]) == "packed"
    assert detect_kind(["image", "label"]) is None
