"""robocurate.demos.writer and the demo sample generator (robocurate.samples.demos).

The generator's manifest is checked against a small, test-local transcription of the
rules (``_expected_findings``), written from the manifest's stated assumptions, so a
generator bug cannot hide behind a validator bug or vice versa.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from robocurate.demos.layout import demo_keys, iter_datasets
from robocurate.demos.split import plan_split, split_train_valid
from robocurate.demos.writer import DemoWriter, mask_array, read_mask, write_mask
from robocurate.io.h5safe import dataset_fingerprints, temp_path_for
from robocurate.samples.demos import (
    MANIFEST_NAME,
    RULE_IDS,
    RULE_SEVERITY,
    generate_demos_dataset,
)


def _demo_arrays(rng, T, *, seed_layout=False, image=True):
    n = T + 1 if seed_layout else T
    obs = {
        "robot0_eef_pos": rng.normal(size=(n, 3)).astype(np.float32),
        "object": rng.normal(size=(n, 10)).astype(np.float32),
    }
    if image:
        obs["agentview_image"] = rng.integers(0, 255, (n, 8, 10, 3), dtype=np.uint8)
    actions = rng.uniform(-1, 1, (T, 7)).astype(np.float32)
    return obs, actions


# =========================================================================== writer


def test_robomimic_layout_attrs_and_compression(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "rm.hdf5"
    lengths = [5, 9, 7]
    with DemoWriter(path, env_name="Lift", env_args={"env_kwargs": {"control_freq": 20}}) as w:
        for T in lengths:
            obs, act = _demo_arrays(rng, T)
            nxt = {k: v.copy() for k, v in obs.items()}
            key = w.add_demo(obs, act, rewards=np.zeros(T, np.float32), dones=np.eye(1, T, T - 1)[0],
                             states=rng.normal(size=(T, 12)), next_obs=nxt, success=T == 9)
            assert key == f"demo_{lengths.index(T)}"
        # Nothing is visible under the final name until the writer closes.
        assert not path.exists()
    with h5py.File(path, "r") as f:
        data = f["data"]
        env = json.loads(data.attrs["env_args"])
        assert env["env_name"] == "Lift" and env["type"] == 1 and env["env_type"] == 1
        assert env["env_kwargs"] == {"control_freq": 20}
        assert int(data.attrs["total"]) == sum(lengths)
        assert demo_keys(data) == ["demo_0", "demo_1", "demo_2"]
        for i, T in enumerate(lengths):
            g = data[f"demo_{i}"]
            assert int(g.attrs["num_samples"]) == T
            assert bool(g.attrs["success"]) == (T == 9)
            assert set(g) == {"obs", "next_obs", "actions", "rewards", "dones", "states"}
            assert set(g["obs"]) == {"robot0_eef_pos", "object", "agentview_image"}
            act = g["actions"]
            assert act.compression == "gzip" and act.compression_opts == 4 and act.shuffle
            img = g["obs/agentview_image"]
            assert img.chunks == (1, 8, 10, 3) and img.compression == "gzip"
            assert g["obs/object"].chunks[1:] == (10,)
        assert "metadata" not in f


def test_seed_layout_nested_observations(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "seed.hdf5"
    with DemoWriter(path, schema="seed", env_name="TactileGrasping", created="then") as w:
        for T in (4, 6):
            obs, act = _demo_arrays(rng, T, seed_layout=True, image=False)
            obs["tactile"] = {"left": rng.random((T + 1, 4, 4, 3), dtype=np.float32),
                              "right": rng.random((T + 1, 4, 4, 3), dtype=np.float32)}
            w.add_demo(obs, act, rewards=np.full(T, 0.5), success=True)
    with h5py.File(path, "r") as f:
        assert {"metadata", "data", "statistics", "models"} <= set(f)
        meta = f["metadata"].attrs
        assert meta["created"] == "then" and meta["version"] == "1.0"
        assert meta["env_name"] == "TactileGrasping" and int(meta["n_demos"]) == 2
        assert "total" not in f["data"].attrs and "env_args" not in meta
        g = f["data/demo_1"]
        assert isinstance(g["observations/tactile"], h5py.Group)
        assert g["observations/tactile/left"].shape == (7, 4, 4, 3)
        assert int(g.attrs["length"]) == 7  # observation steps, one more than actions
        assert g["actions"].shape == (6, 7)
        assert float(g.attrs["total_reward"]) == pytest.approx(3.0)
        assert bool(g.attrs["success"]) is True
        assert "next_obs" not in g and "obs" not in g


def test_numeric_order_explicit_keys_and_overrides(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "many.hdf5"
    with DemoWriter(path, compression=None, first_index=1) as w:
        for _ in range(11):
            w.add_demo(*_demo_arrays(rng, 3, image=False))
        w.add_demo(*_demo_arrays(rng, 3, image=False), key=20, attrs={"num_samples": 5})
        after_gap = w.add_demo(*_demo_arrays(rng, 3, image=False))
        assert w.keys[:3] == ["demo_1", "demo_2", "demo_3"]
        assert w.keys[-3:] == ["demo_11", "demo_20", "demo_21"]
        w.write_mask("odd", [k for k in w.keys if int(k[5:]) % 2])
    assert after_gap == "demo_21"
    with h5py.File(path, "r") as f:
        keys = demo_keys(f["data"])
        assert keys == [f"demo_{i}" for i in range(1, 12)] + ["demo_20", "demo_21"]
        # The override counts in the total, as robomimic sums num_samples attrs.
        assert int(f["data"].attrs["total"]) == 12 * 3 + 5
        ds = f["data/demo_1/actions"]
        assert ds.compression is None and not ds.shuffle
        assert f["mask/odd"].dtype.kind == "S"
        assert read_mask(f, "odd") == ["demo_1", "demo_3", "demo_5", "demo_7", "demo_9", "demo_11", "demo_21"]
    with DemoWriter(tmp_path / "x.hdf5") as w:
        w.add_demo(*_demo_arrays(rng, 2, image=False), key="demo_3")
        with pytest.raises(ValueError, match="already written"):
            w.add_demo(*_demo_arrays(rng, 2, image=False), key=3)
        with pytest.raises(TypeError):
            w.add_demo({"ok": np.zeros((2, 1)), "bad": object()}, np.zeros((2, 1)))
    with h5py.File(tmp_path / "x.hdf5", "r") as f:
        # The failed demo left nothing behind; the next automatic key follows demo_3.
        assert demo_keys(f["data"]) == ["demo_3"] and int(f["data"].attrs["total"]) == 2


def test_failed_write_publishes_nothing_and_keeps_old_file(tmp_path):
    path = tmp_path / "d.hdf5"
    path.write_bytes(b"previous content")
    rng = np.random.default_rng(3)
    with pytest.raises(RuntimeError):
        with DemoWriter(path) as w:
            w.add_demo(*_demo_arrays(rng, 4))
            raise RuntimeError("collector crashed")
    assert path.read_bytes() == b"previous content"
    assert [p.name for p in tmp_path.iterdir()] == ["d.hdf5"]


def test_schema_errors(tmp_path):
    with pytest.raises(ValueError, match="robosuite"):
        DemoWriter(tmp_path / "a.hdf5", schema="robosuite")
    with DemoWriter(tmp_path / "b.hdf5", schema="seed") as w:
        with pytest.raises(ValueError, match="next_obs"):
            w.add_demo({"x": np.zeros((3, 1))}, np.zeros((2, 1)), next_obs={"x": np.zeros((3, 1))})
    assert list(tmp_path.iterdir()) == [tmp_path / "b.hdf5"]


def test_write_mask_on_path_is_crash_safe_and_idempotent(tmp_path):
    rng = np.random.default_rng(4)
    path = tmp_path / "m.hdf5"
    with DemoWriter(path) as w:
        for _ in range(3):
            w.add_demo(*_demo_arrays(rng, 4))
    before = dataset_fingerprints(path)
    assert write_mask(path, "train", ["demo_0", "demo_2"]) is True
    after = dataset_fingerprints(path)
    assert {k: v for k, v in after.items() if not k.startswith("/mask/")} == before
    with h5py.File(path, "r") as f:
        arr = f["mask/train"][()]
        np.testing.assert_array_equal(arr, np.array(["demo_0", "demo_2"], dtype="S"))
    st = path.stat()
    assert write_mask(path, "train", ["demo_0", "demo_2"]) is False
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    assert write_mask(path, "train", ["demo_1"]) is True
    with h5py.File(path, "r") as f:
        assert read_mask(f, "train") == ["demo_1"]
    assert not temp_path_for(path).exists()
    assert mask_array([]).shape == (0,)


# =========================================================================== generator


def _expected_findings(path: Path, schema: str) -> set[tuple]:
    """Independent transcription of the rules, following the manifest's ``assumes``."""
    out: set[tuple] = set()

    def add(rule, demo=None, dataset=None, index=None):
        out.add((rule, RULE_SEVERITY[rule], demo, dataset, tuple(index) if index is not None else None))

    try:
        f = h5py.File(path, "r")
    except OSError:
        add("unreadable_file")
        return out
    with f:
        data = f.get("data")
        if data is None:
            add("no_data_group", dataset="data")
            return out
        obs_name = "observations" if schema == "seed" else "obs"
        if schema == "robomimic" and "env_args" not in data.attrs:
            add("no_metadata", dataset="data")
        if schema == "seed" and "metadata" not in f:
            add("no_metadata", dataset="metadata")
        keys = demo_keys(data)
        nums = sorted(int(k[5:]) for k in keys)
        if nums != list(range(nums[0], nums[0] + len(nums))):
            add("demo_gap", dataset="data")
        sig: dict[str, dict[str, tuple]] = {}
        n_samples, n_actions = 0, 0
        for k in keys:
            g = data[k]
            base = f"data/{k}"
            og = g.get(obs_name)
            act = g.get("actions")
            if og is None:
                add("no_observations", demo=k, dataset=f"{base}/{obs_name}")
            if act is None:
                add("no_actions", demo=k, dataset=f"{base}/actions")
            for rel, ds in iter_datasets(g):
                a = ds[()]
                if a.dtype.kind == "f":
                    for rule, bad in (("nan", np.isnan(a)), ("inf", np.isinf(a))):
                        if bad.any():
                            add(rule, demo=k, dataset=f"{base}/{rel}",
                                index=[int(i) for i in np.argwhere(bad)[0]])
                if rel.split("/")[0] in ("obs", "next_obs", "observations"):
                    sig.setdefault(rel, {})[k] = (a.dtype.str, a.shape[1:])
            n_obs = next(iter(og.values())).shape[0] if og is not None else None
            n_act = act.shape[0] if act is not None else None
            if act is not None:
                a = act[()]
                out_of_range = np.isfinite(a) & (np.abs(a) > 1)
                if out_of_range.any():
                    add("actions_out_of_range", demo=k, dataset=f"{base}/actions",
                        index=[int(i) for i in np.argwhere(out_of_range)[0]])
            if schema == "robomimic":
                ns = int(g.attrs["num_samples"])
                n_samples += ns
                if ns != (n_act if n_act is not None else n_obs):
                    add("num_samples_mismatch", demo=k)
                if n_obs is not None and n_act is not None and n_obs != n_act:
                    add("obs_action_count", demo=k)
            else:
                n_actions += n_act or 0
                if n_obs is not None and int(g.attrs["length"]) != n_obs:
                    add("num_samples_mismatch", demo=k)
                if n_obs is not None and n_act is not None and n_obs != n_act + 1:
                    add("obs_action_count", demo=k)
        for rel, per_demo in sig.items():
            for what, pick in (("dtype_mismatch", 0), ("shape_mismatch", 1)):
                values = [v[pick] for v in per_demo.values()]
                majority = max(set(values), key=values.count)
                for k, v in per_demo.items():
                    if v[pick] != majority:
                        add(what, demo=k, dataset=f"data/{k}/{rel}")
        if schema == "robomimic" and int(data.attrs["total"]) != n_samples:
            add("stale_total", dataset="data")
        if schema == "seed" and "total" in data.attrs and int(data.attrs["total"]) != n_actions:
            add("stale_total", dataset="data")
        for name in f.get("mask", {}):
            names = read_mask(f, name)
            if not names:
                add("empty_mask", dataset=f"mask/{name}")
            for i, n in enumerate(names):
                if n not in data:
                    add("mask_missing_demo", demo=n, dataset=f"mask/{name}", index=[i])
    return out


def _manifest_findings(entry: dict) -> set[tuple]:
    return {(x["rule"], x["severity"], x["demo"], x["dataset"],
             tuple(x["index"]) if x["index"] is not None else None) for x in entry["findings"]}


@pytest.fixture(scope="module", params=["robomimic", "seed"])
def sample(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"demos-{request.param}")
    t0 = time.perf_counter()
    manifest = generate_demos_dataset(root, schema=request.param, with_tactile=True)
    return root, manifest, time.perf_counter() - t0


def test_manifest_covers_every_rule_and_matches_the_files(sample):
    root, m, elapsed = sample
    assert elapsed < 3.0
    assert json.loads((root / MANIFEST_NAME).read_text()) == m
    assert set(m["rules_covered"]) == set(RULE_IDS)
    assert m["rule_ids"]["error"] + m["rule_ids"]["warning"] == list(RULE_IDS)
    kinds = sorted(e["kind"] for e in m["files"])
    assert kinds == ["broken", "clean", "clean", "faulty", "nodata"]
    # Nothing else: no temporary or half-built files left behind.
    assert sorted(p.name for p in root.iterdir()) == sorted([e["path"] for e in m["files"]] + [MANIFEST_NAME])
    for e in m["files"]:
        for x in e["findings"]:
            assert set(x) == {"rule", "severity", "demo", "dataset", "index", "note"}
            assert x["severity"] == RULE_SEVERITY[x["rule"]]
        assert _manifest_findings(e) == _expected_findings(root / e["path"], m["demo_schema"]), e["path"]
        if e["kind"] == "clean":
            assert e["findings"] == []
    faulty = next(e for e in m["files"] if e["kind"] == "faulty")
    demos_with_faults = [x["demo"] for x in faulty["findings"]
                         if x["demo"] and x["rule"] != "mask_missing_demo"]
    assert len(demos_with_faults) == len(set(demos_with_faults))  # one fault per demo


def test_clean_files_are_realistic(sample):
    root, m, _ = sample
    schema = m["demo_schema"]
    obs_name = "observations" if schema == "seed" else "obs"
    successes = []
    for e in (e for e in m["files"] if e["kind"] == "clean"):
        with h5py.File(root / e["path"], "r") as f:
            keys = demo_keys(f["data"])
            assert keys == [d["key"] for d in e["demos"]]
            assert plan_split(keys, m["split"]["valid_fraction"], m["split"]["seed"]) == {
                "train": read_mask(f, "train"), "valid": read_mask(f, "valid")}
            for d in e["demos"]:
                g = f["data"][d["key"]]
                o = g[obs_name]
                T = d["T"]
                assert o["robot0_eef_pos"].shape == (d["obs_steps"], 3)
                assert o["robot0_eef_quat"].shape[1:] == (4,) and o["robot0_gripper_qpos"].shape[1:] == (2,)
                assert o["object"].shape[1:] == (10,)
                img = o["agentview_image"]
                assert img.dtype == np.uint8 and img.shape[1:] == (32, 32, 3)
                tl = o["tactile_left"][()]
                assert tl.dtype == np.float32 and tl.shape[1:] == (16, 16, 3) and tl[..., 0].min() >= 0
                a = g["actions"][()]
                assert a.shape == (T, 7) and np.abs(a).max() <= 1
                pos = o["robot0_eef_pos"][()]
                # Smooth: no step larger than the controller can command.
                assert np.abs(np.diff(pos, axis=0)).max() < 0.05
                q = o["robot0_eef_quat"][()]
                np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1, atol=1e-5)
                success = bool(g.attrs["success"])
                assert success == d["success"]
                assert (g["rewards"][-1] == 1) == success
                successes.append(success)
                # Squeezing the cube shows up on the taxels; a missed grasp does not.
                assert (tl[..., 0].sum(axis=(1, 2)).max() > 3) == success
    assert any(successes) and not all(successes)


def test_generator_is_deterministic_and_faults_are_where_the_manifest_says(tmp_path):
    a = generate_demos_dataset(tmp_path / "a", files=1, demos_per_file=3, seed=5, schema="seed")
    b = generate_demos_dataset(tmp_path / "b", files=1, demos_per_file=3, seed=5, schema="seed")
    assert a == b
    for name in ("demos_0.hdf5", "faulty.hdf5", "nodata.hdf5", "broken.hdf5"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    c = generate_demos_dataset(tmp_path / "c", files=1, demos_per_file=3, seed=6, schema="seed",
                               with_faults=False, with_images=False)
    assert [e["path"] for e in c["files"]] == ["demos_0.hdf5"] and c["rules_covered"] == []
    assert (dataset_fingerprints(tmp_path / "c" / "demos_0.hdf5")
            != dataset_fingerprints(tmp_path / "a" / "demos_0.hdf5"))
    faulty = next(e for e in a["files"] if e["kind"] == "faulty")
    nan = next(x for x in faulty["findings"] if x["rule"] == "nan")
    with h5py.File(tmp_path / "a" / "faulty.hdf5", "r") as f:
        arr = f[nan["dataset"]][()]
        assert np.isnan(arr[tuple(nan["index"])])
        assert not np.isnan(arr.reshape(-1)[: np.ravel_multi_index(nan["index"], arr.shape)]).any()
        assert "demo_5" not in f["data"] and "metadata" not in f
    with pytest.raises(OSError):
        h5py.File(tmp_path / "a" / "broken.hdf5", "r")


def test_split_of_a_clean_sample_file_changes_nothing(tmp_path):
    m = generate_demos_dataset(tmp_path, files=1, demos_per_file=12, seed=3, with_faults=False)
    path = tmp_path / "demos_0.hdf5"
    st = path.stat()
    res = split_train_valid(path, valid_fraction=m["split"]["valid_fraction"], seed=m["split"]["seed"])
    assert res["changed"] is False and res["valid"] == m["files"][0]["masks"]["valid"]
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (st.st_ino, st.st_mtime_ns)


def test_every_clean_file_has_a_success(tmp_path):
    m = generate_demos_dataset(tmp_path, files=4, demos_per_file=1, seed=11, with_faults=False,
                               with_images=False)
    assert all(e["demos"][0]["success"] for e in m["files"])


def test_generator_argument_checks(tmp_path):
    with pytest.raises(ValueError):
        generate_demos_dataset(tmp_path, schema="robosuite")
    with pytest.raises(ValueError):
        generate_demos_dataset(tmp_path, steps=(5, 10))
