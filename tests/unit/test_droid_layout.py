"""Discovering and ordering DROID raw episodes; the real metadata file's schema."""

import datetime as dt
import json

import pytest

from robocurate.droid.extrinsics import cameras_from_h5, cameras_from_metadata
from robocurate.droid.layout import (Episode, SupersetIndex, discover_episodes,
                                     metadata_score, order_episodes, parse_timestamp_folder,
                                     superset_score)
from robocurate.samples.droid import generate_droid_episodes
from tests.conftest import SHARED_DATA

REAL = SHARED_DATA / "droid-raw-metadata" / "metadata_CLVR+13759f6e+2023-05-15-22h-22m-44s.json"


def test_timestamp_folder_spellings():
    assert parse_timestamp_folder("Mon_May_15_22:22:44_2023") == dt.datetime(2023, 5, 15, 22, 22, 44)
    assert parse_timestamp_folder("Sun_Oct__8_09:01:02_2023") == dt.datetime(2023, 10, 8, 9, 1, 2)
    assert parse_timestamp_folder("Tue_Mar__7_16_19_59_2023") == dt.datetime(2023, 3, 7, 16, 19, 59)
    for bad in ("Mon_Foo_15_22:22:44_2023", "2023-05-15", "Mon_Feb_30_22:22:44_2023", "x"):
        assert parse_timestamp_folder(bad) is None


def _ep(lab, name, score):
    return Episode(path=None, lab=lab, outcome="success", date="2023-01-01", folder=name,
                   score=score)


def test_order_sorts_by_score_within_lab_then_interleaves_labs():
    eps = [_ep("B", "b1", 22), _ep("A", "a1", 11), _ep("A", "a2", 33), _ep("B", "b2", 33),
           _ep("C", "c1", 0), _ep("A", "a3", 22), _ep("A", "a0", 22)]
    order = [e.folder for e in order_episodes(eps)]
    assert order == ["a2", "b2", "c1", "a0", "b1", "a3", "a1"]
    assert [e.folder for e in order_episodes(eps, 4)] == ["a2", "b2", "c1", "a0"]
    assert len(order_episodes(eps, -1)) == 7


def test_discovery_of_both_outcomes_and_spellings(tmp_path):
    m = generate_droid_episodes(tmp_path, episodes=4, seed=5, steps=8, faults=False)
    (tmp_path / "CLVR" / "success" / "not-a-date").mkdir(parents=True)
    eps, findings = discover_episodes(tmp_path)
    assert sorted(e.rel for e in eps) == sorted(e["rel"] for e in m["episodes"])
    assert {e.outcome for e in eps} == {"success", "failure"}
    assert any(":" in e.folder for e in eps) and any(":" not in e.folder for e in eps)
    assert [f.rule for f in findings] == ["unexpected_folder"]
    ep = eps[0]
    assert ep.metadata["uuid"] == ep.episode_id and ep.score == 33
    assert Episode.from_dict(json.loads(json.dumps(ep.to_dict()))).rel == ep.rel


def test_superset_matching_and_score(tmp_path):
    generate_droid_episodes(tmp_path, episodes=2, seed=6, steps=8, faults=False)
    eps, _ = discover_episodes(tmp_path)
    target = eps[0]
    entry = {"111": [0, 0, 0, 0, 0, 0], "222": [1, 2, 3, 4, 5, 6], "222_right": [0] * 6,
             "333": "n/a"}
    key = f"{target.lab}+deadbeef+{target.timestamp}"
    idx = SupersetIndex({key: entry})
    assert superset_score(entry) == 10 * 3 + 2
    found, _ = discover_episodes(tmp_path, idx)
    by_rel = {e.rel: e for e in found}
    assert by_rel[target.rel].superset_key == key and by_rel[target.rel].score == 32
    assert all(e.score == 0 for r, e in by_rel.items() if r != target.rel)


def test_real_metadata_schema_and_cameras():
    if not REAL.is_file():
        pytest.skip("shared DROID metadata sample not present")
    real = json.loads(REAL.read_text())
    assert metadata_score(real) == 33
    cams = cameras_from_metadata(real)
    assert cams.wrist == "16787047" and cams.externals == ["20103212", "20655732"]
    assert cameras_from_metadata({**real, "wrist_cam_serial": None, "ext1_cam_serial": "",
                                  "ext2_cam_serial": None}) is None
    assert cameras_from_h5({"2": [1, 1], "1": [0, 0], "3": [1]}).externals == ["2", "3"]


def test_sample_metadata_follows_the_real_schema(tmp_path):
    if not REAL.is_file():
        pytest.skip("shared DROID metadata sample not present")
    real = json.loads(REAL.read_text())
    generate_droid_episodes(tmp_path, episodes=1, seed=7, steps=5, faults=False)
    [path] = list(tmp_path.rglob("metadata_*.json"))
    ours = json.loads(path.read_text())
    assert list(ours) == list(real)
    for k, v in real.items():
        assert type(ours[k]) is type(v), k
    assert ours["hdf5_path"].endswith("/trajectory.h5") and ours["uuid"] in path.name
    # The real file's folder layout is what discovery expects, colon time included.
    folder = tmp_path / "real" / real["lab"] / real["hdf5_path"].rsplit("/", 1)[0]
    folder.mkdir(parents=True)
    (folder / REAL.name).symlink_to(REAL)  # read in place (no licence to copy it)
    eps, _ = discover_episodes(tmp_path / "real")
    assert [e.episode_id for e in eps] == [real["uuid"]] and eps[0].outcome == "failure"
