import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from robocurate.demos.normalize import FORMAT_VERSION, DataNormalizer

REL = 1e-9
ISAAC = Path(__file__).resolve().parents[3] / "shared" / "data" / "isaaclab-mimic-robomimic-hdf5"


def write_robomimic(path, lengths, seed=0, offset=0.0, masks=None, constant=True):
    """robomimic layout; returns {key: [per-demo arrays]} in numeric demo order."""
    rng = np.random.default_rng(seed)
    kept = {"eef_pos": [], "joint": [], "flag": [], "actions": []}
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        for i, n in enumerate(lengths):
            g = data.create_group(f"demo_{i}")
            eef = offset + rng.normal(size=(n, 3)) * [1.0, 5.0, 0.01]
            joint = rng.normal(2.0, 3.0, size=(n, 4)).astype(np.float32)
            if constant:
                joint[:, 2] = np.float32(0.7)  # zero-variance dimension
            flag = rng.normal(size=n)
            act = rng.uniform(-2, 3, size=(n, 2)).astype(np.float32)
            g.create_dataset("obs/eef_pos", data=eef)
            g.create_dataset("obs/joint", data=joint, chunks=(7, 4), maxshape=(None, 4))
            g.create_dataset("obs/flag", data=flag)
            g.create_dataset("obs/image", data=rng.integers(0, 255, (n, 4, 4, 3), dtype=np.uint8))
            g.create_dataset("actions", data=act)
            g.attrs["num_samples"] = n
            for k, v in (("eef_pos", eef), ("joint", joint), ("flag", flag), ("actions", act)):
                kept[k].append(v)
        data.attrs["total"] = sum(lengths)
        for name, demos in (masks or {}).items():
            f.create_dataset(f"mask/{name}", data=np.array(demos, dtype="S"))
    return kept


def write_seed(path, lengths, seed=1):
    """The seed layout: observations/ (nested) with one row more than actions."""
    rng = np.random.default_rng(seed)
    kept = {"proprio/qpos": [], "tactile": [], "actions": []}
    with h5py.File(path, "w") as f:
        f.create_group("metadata").attrs["version"] = "1.0"
        data = f.create_group("data")
        for i, n in enumerate(lengths):
            g = data.create_group(f"demo_{i}")
            qpos = rng.normal(size=(n + 1, 3))
            tact = rng.normal(10, 2, size=(n + 1, 5)).astype(np.float32)
            act = rng.normal(size=(n, 2))
            g.create_dataset("observations/proprio/qpos", data=qpos, compression="gzip")
            g.create_dataset("observations/tactile", data=tact, compression="gzip")
            g.create_dataset("actions", data=act, compression="gzip")
            g.attrs["length"] = n + 1
            kept["proprio/qpos"].append(qpos)
            kept["tactile"].append(tact)
            kept["actions"].append(act)
    return kept


def _check_stats(st, parts):
    data = np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])
    np.testing.assert_allclose(st.mean.ravel(), data.mean(axis=0).ravel(), rtol=REL, atol=1e-15)
    np.testing.assert_allclose(st.std.ravel(), data.std(axis=0).ravel(), rtol=REL, atol=1e-15)
    np.testing.assert_array_equal(st.min.ravel(), data.min(axis=0).ravel())
    np.testing.assert_array_equal(st.max.ravel(), data.max(axis=0).ravel())
    assert st.count == data.shape[0]


@pytest.fixture
def rm(tmp_path):
    path = tmp_path / "rm.hdf5"
    kept = write_robomimic(path, [30, 1, 57, 12, 200, 8, 9, 13, 21, 40, 5, 3], offset=1e6,
                           masks={"train": ["demo_0", "demo_2", "demo_10"]})
    return path, kept


def test_stats_equal_numpy_over_concatenation_across_demos_and_files(rm, tmp_path):
    path, kept = rm
    nz = DataNormalizer().fit(path)
    # default: low-dim obs only (the uint8 image is 4-D)
    assert nz.obs_keys == ["eef_pos", "flag", "joint"]
    for k in nz.obs_keys:
        _check_stats(nz.obs_stats[k], kept[k])
    _check_stats(nz.action_stats, kept["actions"])
    assert nz.obs_stats["flag"].shape == () and nz.obs_stats["joint"].shape == (4,)

    path2 = tmp_path / "rm2.hdf5"
    kept2 = write_robomimic(path2, [17, 33], seed=5, offset=1e6)
    with h5py.File(path2, "r") as f2:  # open files are accepted too, and left open
        nz2 = DataNormalizer().fit([path, f2])
        assert f2.id.valid
    for k in nz2.obs_keys:
        _check_stats(nz2.obs_stats[k], kept[k] + kept2[k])
    _check_stats(nz2.action_stats, kept["actions"] + kept2["actions"])
    assert nz2.sources == [str(path), str(path2)]


def test_fit_with_mask_and_explicit_keys(rm):
    path, kept = rm
    nz = DataNormalizer().fit(path, obs_keys=["joint", "image"], mask="train")
    assert nz.obs_keys == ["image", "joint"]
    idx = [0, 2, 10]
    _check_stats(nz.obs_stats["joint"], [kept["joint"][i] for i in idx])
    _check_stats(nz.action_stats, [kept["actions"][i] for i in idx])
    assert nz.obs_stats["image"].shape == (4, 4, 3)
    nz_list = DataNormalizer().fit(path, obs_keys=["joint"], mask={"demo_0", "demo_2", "demo_10"})
    np.testing.assert_array_equal(nz_list.obs_stats["joint"].mean, nz.obs_stats["joint"].mean)
    with pytest.raises(KeyError, match="available masks.*train"):
        DataNormalizer().fit(path, mask="valid")
    with pytest.raises(KeyError, match="available.*eef_pos"):
        DataNormalizer().fit(path, obs_keys=["nope"])


def test_seed_schema_nested_keys(tmp_path):
    path = tmp_path / "seed.hdf5"
    kept = write_seed(path, [10, 25, 3])
    nz = DataNormalizer("minmax").fit(path)
    assert nz.obs_keys == ["proprio/qpos", "tactile"]
    for k in nz.obs_keys:
        _check_stats(nz.obs_stats[k], kept[k])
    _check_stats(nz.action_stats, kept["actions"])
    assert nz.obs_stats["tactile"].count == 10 + 25 + 3 + 3  # n + 1 observations per demo


@pytest.mark.parametrize("mode", ["gaussian", "minmax"])
def test_round_trip_exact_numpy_and_torch(rm, mode):
    path, kept = rm
    nz = DataNormalizer(mode).fit(path)
    obs = {k: np.concatenate(kept[k]).astype(np.float64) for k in nz.obs_keys}
    n = nz.normalize_obs(obs)
    back = nz.denormalize_obs(n)
    for k in obs:
        assert n[k].dtype == np.float64 and np.all(np.isfinite(n[k]))
        np.testing.assert_allclose(back[k], obs[k], rtol=REL, atol=1e-9)
    act = np.concatenate(kept["actions"]).astype(np.float64)
    na = nz.normalize_action(act)
    np.testing.assert_allclose(nz.denormalize_action(na), act, rtol=REL, atol=1e-9)
    if mode == "minmax":
        assert na.min() >= -1 - 1e-12 and na.max() <= 1 + 1e-12
        np.testing.assert_allclose(na.min(axis=0), -1, atol=1e-12)
        np.testing.assert_allclose(na.max(axis=0), 1, atol=1e-12)
    else:
        np.testing.assert_allclose(na.mean(axis=0), 0, atol=1e-9)
        np.testing.assert_allclose(na.std(axis=0), 1, rtol=1e-9)

    t = torch.from_numpy(act)
    nt = nz.normalize_action(t)
    assert isinstance(nt, torch.Tensor) and nt.dtype == torch.float64
    np.testing.assert_allclose(nt.numpy(), na, rtol=0, atol=1e-12)
    np.testing.assert_allclose(nz.denormalize_action(nt).numpy(), act, rtol=REL, atol=1e-9)
    # float32 stays float32; batch dims broadcast
    t32 = torch.from_numpy(obs["joint"].astype(np.float32)).reshape(-1, 1, 4)
    r32 = nz.normalize_obs({"joint": t32})["joint"]
    assert r32.dtype == torch.float32 and r32.shape == t32.shape
    np.testing.assert_allclose(nz.denormalize("joint", r32).numpy(), t32.numpy(), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("mode", ["gaussian", "minmax"])
def test_zero_variance_dimension_is_finite_and_restored(rm, mode):
    path, kept = rm
    nz = DataNormalizer(mode).fit(path)
    joint = np.concatenate(kept["joint"])
    y = nz.normalize("joint", joint)
    assert y.dtype == np.float32 and np.all(np.isfinite(y))
    assert np.all(y[:, 2] == 0)  # the constant dimension maps to exactly 0
    assert np.all(nz.denormalize("joint", y)[:, 2] == np.float32(0.7))
    offset, scale = nz.affine("joint")
    assert scale[2] == 1.0 and offset[2] == np.float32(0.7)


def test_integer_input_becomes_float32(rm):
    path, _ = rm
    nz = DataNormalizer().fit(path, obs_keys=["image"])
    img = np.full((2, 4, 4, 3), 7, dtype=np.uint8)
    assert nz.normalize("image", img).dtype == np.float32
    ti = nz.normalize("image", torch.from_numpy(img))
    assert ti.dtype == torch.float32


def test_save_load_round_trip(rm, tmp_path):
    path, _ = rm
    for mode in ("gaussian", "minmax"):
        nz = DataNormalizer(mode).fit(path, mask="train")
        out = nz.save(tmp_path / "sub" / f"norm_{mode}.json")
        d = json.loads(out.read_text())
        assert d["version"] == FORMAT_VERSION and d["mode"] == mode and d["filter"] == "train"
        assert set(d["obs"]["joint"]) >= {"mean", "std", "min", "max", "count", "shape"}
        back = DataNormalizer.load(out)
        assert back.to_dict() == nz.to_dict()
        x = np.random.default_rng(0).normal(size=(5, 4))
        np.testing.assert_array_equal(back.normalize("joint", x), nz.normalize("joint", x))
        assert list(tmp_path.joinpath("sub").glob("*.tmp")) == []
    with pytest.raises(ValueError, match="version"):
        DataNormalizer.from_dict({**nz.to_dict(), "version": FORMAT_VERSION + 1})


def test_unknown_key_error_lists_available(rm):
    path, _ = rm
    nz = DataNormalizer().fit(path)
    with pytest.raises(KeyError, match=r"'nope'.*available.*eef_pos.*flag.*joint"):
        nz.normalize_obs({"nope": np.zeros(3)})
    # non-strict passes unknown keys through
    img = np.zeros((4, 4, 3), np.uint8)
    assert nz.normalize_obs({"image": img}, strict=False)["image"] is img
    with pytest.raises(ValueError, match="expected shape"):
        nz.normalize("joint", np.zeros((3, 5)))
    with pytest.raises(ValueError):
        DataNormalizer("zscore")


def test_no_action_stats(rm):
    path, _ = rm
    nz = DataNormalizer().fit(path, action_key=None)
    assert nz.action_stats is None
    with pytest.raises(KeyError, match="no action statistics"):
        nz.normalize_action(np.zeros(2))


def test_real_isaaclab_file():
    path = ISAAC / "dataset.hdf5"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    nz = DataNormalizer("minmax").fit(path)
    assert "eef_pos" in nz.obs_keys and nz.action_stats.shape == (7,)
    parts = {"eef_pos": [], "actions": []}
    with h5py.File(path, "r") as f:
        for d in f["data"]:
            parts["eef_pos"].append(f[f"data/{d}/obs/eef_pos"][()])
            parts["actions"].append(f[f"data/{d}/actions"][()])
    _check_stats(nz.obs_stats["eef_pos"], parts["eef_pos"])
    _check_stats(nz.action_stats, parts["actions"])
    assert nz.action_stats.count == 2163
    act = np.concatenate(parts["actions"])
    y = nz.normalize_action(act)
    assert np.all(np.isfinite(y)) and y.min() >= -1 - 1e-6 and y.max() <= 1 + 1e-6
