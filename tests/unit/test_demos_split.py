"""robocurate.demos.split: robomimic-style train/valid masks, written crash-safely."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from robocurate.demos import split as split_mod
from robocurate.demos.split import plan_split, split_train_valid
from robocurate.demos.writer import DemoWriter, read_mask
from robocurate.io.h5safe import dataset_fingerprints, temp_path_for

ROBOSUITE = Path(__file__).resolve().parents[1] / "data" / "robosuite-demos"


def _make(path: Path, n: int, *, schema: str = "robomimic") -> Path:
    rng = np.random.default_rng(n)
    extra = 1 if schema == "seed" else 0
    with DemoWriter(path, schema=schema) as w:
        for _ in range(n):
            T = int(rng.integers(3, 8))
            w.add_demo({"pos": rng.normal(size=(T + extra, 3)).astype(np.float32)},
                       rng.uniform(-1, 1, (T, 7)).astype(np.float32))
    return path


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def test_plan_split_rules():
    keys = [f"demo_{i}" for i in range(20)]
    s = plan_split(keys, 0.1, seed=0)
    assert len(s["valid"]) == 2 and sorted(s["train"] + s["valid"], key=lambda k: int(k[5:])) == keys
    assert s["train"] == [k for k in keys if k in s["train"]]  # numeric order kept
    assert plan_split(keys, 0.1, seed=0) == s
    assert any(plan_split(keys, 0.1, seed=i)["valid"] != s["valid"] for i in range(1, 5))
    assert len(plan_split(keys[:5], 0.1)["valid"]) == 1  # at least one
    assert len(plan_split([f"demo_{i}" for i in range(25)], 0.1)["valid"]) == 3  # 2.5 rounds up
    assert plan_split(keys[:1], 0.5) == {"train": ["demo_0"], "valid": []}
    assert plan_split(keys[:2], 0.9)["train"] != []  # training never empty
    assert plan_split(keys, 0.0)["valid"] == []
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError):
            plan_split(keys, bad)


@pytest.mark.parametrize("schema", ["robomimic", "seed"])
def test_split_writes_masks_and_preserves_data(tmp_path, schema):
    path = _make(tmp_path / "d.hdf5", 12, schema=schema)
    before = dataset_fingerprints(path)
    res = split_train_valid(path, valid_fraction=0.25, seed=3)
    assert res["changed"] is True and len(res["valid"]) == 3 and len(res["train"]) == 9
    after = dataset_fingerprints(path)
    assert {k: v for k, v in after.items() if not k.startswith("/mask/")} == before
    with h5py.File(path, "r") as f:
        assert f["mask/train"].dtype.kind == "S" and f["mask/valid"].dtype.kind == "S"
        assert read_mask(f, "train") == res["train"] and read_mask(f, "valid") == res["valid"]
        # demo_10/demo_11 sort after demo_9, as robomimic orders demos.
        assert res["train"] == sorted(res["train"], key=lambda k: int(k[5:]))
    assert not temp_path_for(path).exists()
    # An identical copy gets the identical split: determinism for a seed.
    other = _make(tmp_path / "e.hdf5", 12, schema=schema)
    assert split_train_valid(other, valid_fraction=0.25, seed=3)["valid"] == res["valid"]


def test_no_write_when_masks_are_already_right(tmp_path):
    path = _make(tmp_path / "d.hdf5", 10)
    first = split_train_valid(path, seed=1)
    stamp = _stamp(path)
    again = split_train_valid(path, seed=1)
    assert again["changed"] is False and again["train"] == first["train"] and again["valid"] == first["valid"]
    assert _stamp(path) == stamp
    changed = split_train_valid(path, seed=2)
    assert changed["changed"] is True and _stamp(path) != stamp


def test_overwrite_false_keeps_existing_masks(tmp_path):
    path = _make(tmp_path / "d.hdf5", 10)
    with h5py.File(path, "a") as f:
        # A mask written by another tool, as variable-length strings.
        f.create_dataset("mask/valid", data=["demo_0", "demo_1"], dtype=h5py.string_dtype())
    res = split_train_valid(path, seed=0, overwrite=False)
    assert res["valid"] == ["demo_0", "demo_1"] and res["kept"] == ["valid"]
    assert res["changed"] is True  # mask/train was missing and got written
    with h5py.File(path, "r") as f:
        assert read_mask(f, "valid") == ["demo_0", "demo_1"]
        assert read_mask(f, "train") == res["train"]
    stamp = _stamp(path)
    assert split_train_valid(path, seed=0, overwrite=False)["changed"] is False
    assert _stamp(path) == stamp
    res = split_train_valid(path, seed=0, overwrite=True)
    assert res["kept"] == [] and res["valid"] == plan_split([f"demo_{i}" for i in range(10)], 0.1, 0)["valid"]
    with h5py.File(path, "r") as f:
        assert f["mask/valid"].dtype.kind == "S"


def test_failure_mid_write_leaves_original_untouched(tmp_path, monkeypatch):
    path = _make(tmp_path / "d.hdf5", 8)
    split_train_valid(path, seed=0)
    original = path.read_bytes()
    calls = []

    def put_then_fail(f, name, keys):
        calls.append(name)
        if len(calls) == 2:
            raise RuntimeError("killed between the two masks")
        return real_put(f, name, keys)

    real_put = split_mod._put_mask
    monkeypatch.setattr(split_mod, "_put_mask", put_then_fail)
    with pytest.raises(RuntimeError):
        split_train_valid(path, seed=9)
    assert path.read_bytes() == original
    assert not temp_path_for(path).exists()


def test_clear_errors(tmp_path):
    nodata = tmp_path / "nodata.hdf5"
    with h5py.File(nodata, "w") as f:
        f.create_group("episodes")
    with pytest.raises(ValueError, match="no 'data' group"):
        split_train_valid(nodata)
    empty = tmp_path / "empty.hdf5"
    with h5py.File(empty, "w") as f:
        f.create_group("data")
    with pytest.raises(ValueError, match="no demos"):
        split_train_valid(empty)
    broken = tmp_path / "broken.hdf5"
    broken.write_bytes(_make(tmp_path / "ok.hdf5", 3).read_bytes()[:600])
    with pytest.raises(OSError):
        split_train_valid(broken)
    for p in (nodata, empty):
        with h5py.File(p, "r") as f:
            assert "mask" not in f


def test_split_on_real_robosuite_demo(tmp_path):
    src = ROBOSUITE / "lift-panda-demo.hdf5"
    path = tmp_path / "lift.hdf5"
    shutil.copyfile(src, path)
    before = dataset_fingerprints(path)
    res = split_train_valid(path, valid_fraction=0.1, seed=0)
    assert res == {"train": ["demo_1"], "valid": [], "changed": True, "kept": []}
    after = dataset_fingerprints(path)
    assert {k: v for k, v in after.items() if not k.startswith("/mask/")} == before
    with h5py.File(path, "r") as f, h5py.File(src, "r") as g:
        assert f["data"].attrs["env"] == g["data"].attrs["env"]
        assert f["data/demo_1"].attrs["model_file"] == g["data/demo_1"].attrs["model_file"]
        assert f["mask/valid"].shape == (0,)


def test_split_on_multi_demo_robosuite_file(tmp_path):
    # robosuite's raw layout numbers demos from 1; build demo_1..demo_6 from the real files.
    path = tmp_path / "all.hdf5"
    with h5py.File(path, "w") as out:
        data = out.create_group("data")
        data.attrs["env"] = "Mixed"
        for i, src in enumerate(sorted(ROBOSUITE.glob("*.hdf5")), start=1):
            with h5py.File(src, "r") as f:
                f.copy(f["data/demo_1"], data, name=f"demo_{i}")
    before = dataset_fingerprints(path)
    res = split_train_valid(path, valid_fraction=0.34, seed=4)
    assert len(res["valid"]) == 2 and len(res["train"]) == 4
    assert sorted(res["train"] + res["valid"]) == [f"demo_{i}" for i in range(1, 7)]
    after = dataset_fingerprints(path)
    assert {k: v for k, v in after.items() if not k.startswith("/mask/")} == before
