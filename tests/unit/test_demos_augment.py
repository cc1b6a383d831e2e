"""robocurate.demos.augment: the seed's augmentation, never touching a source file."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from robocurate.demos.augment import add_noise, augment_demonstration, read_demo, time_reverse
from robocurate.demos.writer import DemoWriter

ROBOSUITE = Path(__file__).resolve().parents[1] / "data" / "robosuite-demos"


def _demo(T=20, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "observations": {
            "robot_joint_pos": rng.normal(size=(T + 1, 7)).astype(np.float32),
            "object_pos": rng.normal(size=(T + 1, 3)),
            "image": rng.integers(0, 255, (T + 1, 4, 4, 3), dtype=np.uint8),
            "tactile": {"left": rng.random((T + 1, 4, 4, 3), dtype=np.float32)},
        },
        "actions": rng.uniform(-1, 1, (T, 7)).astype(np.float32),
        "success": True,
    }


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_demo_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict):
            _assert_demo_equal(a[k], b[k])
        else:
            np.testing.assert_array_equal(a[k], b[k])


def test_add_noise_copies_and_perturbs_only_named_float_keys():
    demo = _demo()
    before = copy.deepcopy(demo)
    noisy = add_noise(demo, obs_keys=("robot_joint_pos", "object_pos", "image", "tactile/left", "absent"),
                      rng=1)
    _assert_demo_equal(demo, before)  # input untouched
    obs, nobs = demo["observations"], noisy["observations"]
    for key in ("robot_joint_pos", "object_pos"):
        assert nobs[key].dtype == obs[key].dtype and not np.shares_memory(nobs[key], obs[key])
        diff = nobs[key] - obs[key]
        assert 0.005 < diff.std() < 0.02
    assert nobs["tactile"]["left"].dtype == np.float32
    assert not np.array_equal(nobs["tactile"]["left"], obs["tactile"]["left"])
    # uint8 images are left alone: Gaussian noise on them would be quantised away.
    np.testing.assert_array_equal(nobs["image"], obs["image"])
    assert not np.shares_memory(nobs["image"], obs["image"])
    assert noisy["actions"].dtype == np.float32
    assert noisy["success"] is True


def test_add_noise_default_keys_and_clipping():
    demo = _demo(T=200)
    demo["actions"][:] = 0.99
    noisy = add_noise(demo, action_sigma=0.5, rng=np.random.default_rng(2))
    a = noisy["actions"]
    assert a.max() == pytest.approx(1.0) and a.min() >= -1.0
    assert (a == 1.0).mean() > 0.3  # large noise piles up at the bound
    unclipped = add_noise(demo, action_sigma=0.5, clip=None, rng=2)
    assert unclipped["actions"].max() > 1.5
    np.testing.assert_array_equal(noisy["observations"]["tactile"]["left"],
                                  demo["observations"]["tactile"]["left"])


def test_add_noise_is_deterministic_for_a_seed():
    demo = _demo()
    _assert_demo_equal(add_noise(demo, rng=7), add_noise(demo, rng=7))
    assert not np.array_equal(add_noise(demo, rng=7)["actions"], add_noise(demo, rng=8)["actions"])


def test_time_reverse_semantics():
    demo = _demo(T=10)
    rev = time_reverse(demo)
    assert set(rev) == {"observations", "actions", "success"} and rev["success"] is True
    np.testing.assert_array_equal(rev["observations"]["robot_joint_pos"],
                                  demo["observations"]["robot_joint_pos"][::-1])
    np.testing.assert_array_equal(rev["observations"]["tactile"]["left"][0],
                                  demo["observations"]["tactile"]["left"][-1])
    np.testing.assert_array_equal(rev["actions"], -demo["actions"][::-1])
    assert rev["actions"].flags.c_contiguous and not np.shares_memory(rev["actions"], demo["actions"])
    back = time_reverse(rev)
    _assert_demo_equal(back["observations"], demo["observations"])
    np.testing.assert_array_equal(back["actions"], demo["actions"])
    assert time_reverse({**demo, "success": False})["success"] is False


@pytest.mark.parametrize("config,n", [({}, 1), ({"add_noise": True}, 2), ({"time_reversal": True}, 2),
                                      ({"add_noise": True, "time_reversal": True, "action_sigma": 0.0}, 3)])
def test_augment_demonstration_shapes(config, n):
    demo = _demo()
    out = augment_demonstration(demo, config, rng=0)
    assert len(out) == n and out[0] is demo
    if config.get("time_reversal"):
        np.testing.assert_array_equal(out[-1]["actions"], -demo["actions"][::-1])
    if n == 3:
        np.testing.assert_array_equal(out[1]["actions"], demo["actions"])  # sigma 0


def test_list_of_step_dicts_is_rejected():
    with pytest.raises(TypeError, match="stacked"):
        add_noise({"observations": [{"robot_joint_pos": np.zeros(3)}], "actions": np.zeros((1, 2))})
    with pytest.raises(TypeError):
        time_reverse({"actions": np.zeros((1, 2))})


@pytest.mark.parametrize("schema", ["robomimic", "seed"])
def test_read_and_augment_never_touches_the_file(tmp_path, schema):
    path = tmp_path / f"{schema}.hdf5"
    src = _demo(T=12, seed=3)
    if schema == "robomimic":
        src["observations"] = {k: v[:12] for k, v in src["observations"].items() if k != "tactile"}
    with DemoWriter(path, schema=schema) as w:
        w.add_demo(src["observations"], src["actions"], rewards=np.arange(12.0), success=True)
    digest = _sha(path)
    with h5py.File(path, "r") as f:
        demo = read_demo(f["data/demo_0"], schema)
        assert read_demo(f["data/demo_0"])["observations"].keys() == demo["observations"].keys()
    _assert_demo_equal(demo["observations"], src["observations"])
    np.testing.assert_array_equal(demo["actions"], src["actions"])
    assert demo["success"] is True and demo["key"] == "demo_0"
    np.testing.assert_array_equal(demo["rewards"], np.arange(12.0))
    out = augment_demonstration(demo, {"add_noise": True, "time_reversal": True}, rng=0)
    for d in out:
        d["actions"][...] = 0  # even mutating the results cannot reach the file
    assert _sha(path) == digest


def test_read_demo_of_raw_robosuite_file():
    path = ROBOSUITE / "lift-panda-demo.hdf5"
    digest = _sha(path)
    with h5py.File(path, "r") as f:
        demo = read_demo(f["data/demo_1"])
    assert demo["observations"] == {} and demo["actions"].shape == (412, 7)
    assert demo["states"].shape == (412, 32) and demo["success"] is False
    rev = time_reverse(demo)
    assert rev["actions"].shape == (412, 7)
    assert _sha(path) == digest
