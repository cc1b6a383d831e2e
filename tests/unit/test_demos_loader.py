import os
import pickle
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from robocurate.demos.loader import DemoDataset
from robocurate.demos.normalize import DataNormalizer

ISAAC = Path(__file__).resolve().parents[3] / "shared" / "data" / "isaaclab-mimic-robomimic-hdf5"
LENGTHS = [5, 1, 8, 3, 7, 2, 4, 6, 9, 3, 11, 2]  # 12 demos: demo_10 and demo_11 exist


def write_robomimic(path, lengths, masks=None):
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        # created in lexicographic order on purpose: storage order is not demo order
        for i in sorted(range(len(lengths)), key=lambda i: f"demo_{i}"):
            n = lengths[i]
            g = data.create_group(f"demo_{i}")
            steps = np.arange(n, dtype=np.float32)
            # values encode (demo, step) so that any misplaced row is visible
            g.create_dataset("obs/pos", data=np.stack([i * 1000 + steps, -steps, steps * 0.5], 1))
            g.create_dataset("obs/scalar", data=(i * 1000 + steps).astype(np.float64))
            img = np.zeros((n, 6, 5, 3), np.uint8)
            img[:] = (np.arange(n) % 256)[:, None, None, None]
            img[..., 1] = i
            g.create_dataset("obs/rgb", data=img, chunks=(1, 6, 5, 3), compression="gzip")
            g.create_dataset("actions", data=np.stack([i * 1000 + steps + 0.25, steps], 1))
            g.attrs["num_samples"] = n
        data.attrs["total"] = sum(lengths)
        for name, demos in (masks or {}).items():
            f.create_dataset(f"mask/{name}", data=np.array(demos, dtype="S"))


def write_seed(path, lengths):
    with h5py.File(path, "w") as f:
        f.create_group("metadata")
        data = f.create_group("data")
        for i, n in enumerate(lengths):
            g = data.create_group(f"demo_{i}")
            steps = np.arange(n + 1, dtype=np.float64)
            g.create_dataset("observations/arm/qpos", data=np.stack([i * 1000 + steps] * 2, 1))
            g.create_dataset("observations/force", data=i * 1000 + steps)
            g.create_dataset("actions", data=(i * 1000 + np.arange(n, dtype=np.float64))[:, None])


@pytest.fixture
def rm(tmp_path):
    path = tmp_path / "rm.hdf5"
    write_robomimic(path, LENGTHS, masks={"train": ["demo_11", "demo_0", "demo_9", "demo_10"],
                                          "valid": ["demo_3"]})
    return path


def expected(path, demo, key, steps, length):
    with h5py.File(path, "r") as f:
        return f[f"data/{demo}/{key}"][()][np.clip(steps, 0, length - 1)]


def test_index_covers_every_step_in_numeric_demo_order(rm):
    ds = DemoDataset(rm, return_index=True)
    assert ds.schema == "robomimic"
    assert ds.demos == [f"demo_{i}" for i in range(12)]
    assert len(ds) == sum(LENGTHS)
    assert ds.obs_keys == ["pos", "rgb", "scalar"]
    seen = [(int(it["demo_index"]), int(it["step"])) for it in (ds[i] for i in range(len(ds)))]
    assert seen == [(d, t) for d, n in enumerate(LENGTHS) for t in range(n)]
    # demo_10 follows demo_9
    first_of_10 = sum(LENGTHS[:10])
    assert ds[first_of_10]["obs/scalar"].item() == 10_000
    assert ds[first_of_10 - 1]["obs/scalar"].item() == 9002
    assert ds[-1]["obs/scalar"].item() == 11_001
    with pytest.raises(IndexError):
        ds[len(ds)]
    ds.close()


def test_items_equal_direct_h5py_slices(rm):
    ds = DemoDataset(rm, obs_keys=["pos", "rgb"], seq_len=1)
    item = ds[sum(LENGTHS[:4]) + 5]  # demo_4, step 5
    # no optional keys by default: each costs a shared-memory segment per batch
    assert set(item) == {"obs/pos", "obs/rgb", "actions", "pad_mask"}
    with h5py.File(rm, "r") as f:
        np.testing.assert_array_equal(item["obs/pos"].numpy(), f["data/demo_4/obs/pos"][5:6])
        np.testing.assert_array_equal(item["obs/rgb"].numpy(), f["data/demo_4/obs/rgb"][5:6])
        np.testing.assert_array_equal(item["actions"].numpy(), f["data/demo_4/actions"][5:6])
    assert item["obs/pos"].dtype == torch.float32 and item["obs/rgb"].dtype == torch.uint8
    assert item["actions"].shape == (1, 2) and item["pad_mask"].tolist() == [True]


@pytest.mark.parametrize("seq_len,frame_stack", [(1, 3), (4, 1), (3, 2), (12, 4)])
def test_windows_pad_both_ends_with_frame_stack(rm, seq_len, frame_stack):
    ds = DemoDataset(rm, seq_len=seq_len, frame_stack=frame_stack)
    assert len(ds) == sum(LENGTHS)
    assert ("obs_pad_mask" in ds[0]) == (frame_stack > 1)
    i = 0
    for d, n in enumerate(LENGTHS):
        for t in range(n):
            item = ds[i]
            i += 1
            obs_steps = np.arange(t - frame_stack + 1, t + seq_len)
            act_steps = np.arange(t, t + seq_len)
            demo = f"demo_{d}"
            for key in ("pos", "rgb"):
                got = item[f"obs/{key}"].numpy()
                assert got.shape[0] == frame_stack - 1 + seq_len
                np.testing.assert_array_equal(got, expected(rm, demo, f"obs/{key}", obs_steps, n))
            np.testing.assert_array_equal(item["actions"].numpy(),
                                          expected(rm, demo, "actions", act_steps, n))
            assert item["pad_mask"].tolist() == (act_steps < n).tolist()
            if frame_stack > 1:
                assert item["obs_pad_mask"].tolist() == ((obs_steps >= 0)
                                                         & (obs_steps < n)).tolist()
            if d != 2:
                continue
            # spot-check the edge repetition itself on demo_2 (n = 8)
            if t == 0 and frame_stack > 1:
                assert item["obs/scalar"][0].item() == 2000  # history padded with step 0
            if t == n - 1 and seq_len > 1:
                assert item["actions"][-1, 1].item() == n - 1  # future padded with last step


def test_no_padding_drops_edge_starts(rm):
    ds = DemoDataset(rm, seq_len=3, frame_stack=2, pad_frame_stack=False, pad_seq_length=False,
                     return_index=True)
    assert len(ds) == sum(max(0, n - 1 - 2) for n in LENGTHS)
    assert all(bool(ds[i]["pad_mask"].all()) and bool(ds[i]["obs_pad_mask"].all())
               for i in range(len(ds)))
    assert ds[0]["step"].item() == 1  # first start has its one frame of history
    assert ds.locate(0)[0] == 0 and ds.locate(len(ds) - 1) == (10, 8)


def test_filter_key(rm):
    ds = DemoDataset(rm, filter_key="train")
    assert ds.demos == ["demo_0", "demo_9", "demo_10", "demo_11"]
    assert len(ds) == LENGTHS[0] + LENGTHS[9] + LENGTHS[10] + LENGTHS[11]
    assert ds[LENGTHS[0] + LENGTHS[9]]["obs/scalar"].item() == 10_000
    assert len(DemoDataset(rm, filter_key="valid")) == LENGTHS[3]
    with pytest.raises(KeyError, match="available masks.*train.*valid"):
        DemoDataset(rm, filter_key="test")


def test_unknown_obs_key(rm):
    with pytest.raises(KeyError, match="available.*pos.*rgb.*scalar"):
        DemoDataset(rm, obs_keys=["depth"])


def test_seed_schema_aligns_observations_with_actions(tmp_path):
    path = tmp_path / "seed.hdf5"
    lengths = [4, 2, 6]
    write_seed(path, lengths)
    ds = DemoDataset(path, seq_len=3, frame_stack=2)
    assert ds.schema == "seed" and ds.obs_keys == ["arm/qpos", "force"]
    assert len(ds) == sum(lengths)  # actions count, not the n + 1 observations
    last = ds[lengths[0] - 1]  # demo_0, step 3 (the last action)
    assert last["obs/force"].tolist() == [2.0, 3.0, 3.0, 3.0]  # terminal obs (4) never used
    assert last["actions"][:, 0].tolist() == [3.0, 3.0, 3.0]
    assert last["pad_mask"].tolist() == [True, False, False]
    assert last["obs/arm/qpos"].shape == (4, 2)


def test_lazy_open_and_pickle(rm):
    ds = DemoDataset(rm)
    assert ds._file is None  # nothing open after construction
    ds[0]
    assert ds._file is not None and ds._pid == os.getpid()
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._file is None
    assert clone[3]["obs/scalar"].item() == ds[3]["obs/scalar"].item()
    ds.close()
    clone.close()
    assert ds._file is None
    with DemoDataset(rm) as again:
        again[1]
    assert again._file is None


def _loader_values(loader):
    steps, scalars, rgb0 = [], [], []
    for batch in loader:
        steps.append(batch["demo_index"] * 1000 + batch["step"])
        scalars.append(batch["obs/scalar"][:, -1])
        rgb0.append(batch["obs/rgb"][:, -1, 0, 0, 0])
    return torch.cat(steps), torch.cat(scalars), torch.cat(rgb0)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_multiprocess(rm, context):
    ds = DemoDataset(rm, frame_stack=2, return_index=True)
    if context == "fork":
        ds[0]  # a handle open in the parent must not leak into forked workers
    t0 = time.perf_counter()
    loader = DataLoader(ds, batch_size=8, num_workers=2, shuffle=False,
                        multiprocessing_context=context)
    key, scalar, rgb = _loader_values(loader)
    assert time.perf_counter() - t0 < 20
    assert len(key) == len(ds)
    # every item once, in order, with the values of its own (demo, step)
    assert key.tolist() == [d * 1000 + t for d, n in enumerate(LENGTHS) for t in range(n)]
    assert torch.equal(scalar, key.double())
    assert torch.equal(rgb, (key % 1000).to(torch.uint8))
    ds.close()


def test_with_normalizer(rm):
    nz = DataNormalizer().fit(rm)
    assert nz.obs_keys == ["pos", "scalar"]  # the image is not low-dim
    ds = DemoDataset(rm, seq_len=2, frame_stack=2, normalizer=nz)
    raw = DemoDataset(rm, seq_len=2, frame_stack=2)
    assert ds.normalized_keys == ["pos", "scalar"] and ds.normalize_actions
    for i in (0, 7, len(ds) - 1):
        a, b = ds[i], raw[i]
        np.testing.assert_allclose(a["obs/pos"].numpy(), nz.normalize("pos", b["obs/pos"].numpy()))
        np.testing.assert_allclose(a["actions"].numpy(),
                                   nz.normalize_action(b["actions"].numpy()))
        np.testing.assert_allclose(nz.denormalize_action(a["actions"]).numpy(),
                                   b["actions"].numpy(), rtol=1e-6, atol=1e-5)  # float32 data
        assert torch.equal(a["obs/rgb"], b["obs/rgb"])  # no stats: passed through raw
    loader = DataLoader(ds, batch_size=8, num_workers=2)
    total = sum(batch["actions"].shape[0] for batch in loader)
    assert total == len(ds)
    bad = DataNormalizer().fit(rm, obs_keys=["pos"], action_key=None)
    ds2 = DemoDataset(rm, normalizer=bad)
    assert ds2.normalized_keys == ["pos"] and not ds2.normalize_actions


def test_real_isaaclab_file():
    path = ISAAC / "dataset.hdf5"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    ds = DemoDataset(path, obs_keys=["eef_pos", "joint_pos"], seq_len=4, frame_stack=2)
    numbers = [0, 1, 2, 6, 8, 9, 12, 13, 14, 16]
    assert ds.demos == [f"demo_{n}" for n in numbers]
    with h5py.File(path, "r") as f:
        lengths = [f[f"data/demo_{n}/actions"].shape[0] for n in numbers]
        assert len(ds) == sum(lengths) == 2163
        d = ds.demos.index("demo_12")
        i = sum(lengths[:d])  # first step of demo_12: history padded with step 0
        item = ds[i]
        eef = f["data/demo_12/obs/eef_pos"]
        np.testing.assert_array_equal(item["obs/eef_pos"].numpy(), eef[()][[0, 0, 1, 2, 3]])
        np.testing.assert_array_equal(item["actions"].numpy(), f["data/demo_12/actions"][0:4])
        end = ds[sum(lengths[:d + 1]) - 1]
        n = lengths[d]
        np.testing.assert_array_equal(end["obs/joint_pos"].numpy(),
                                      f["data/demo_12/obs/joint_pos"][()][[n - 2, n - 1, n - 1,
                                                                       n - 1, n - 1]])
        assert end["pad_mask"].tolist() == [True, False, False, False]
    nz = DataNormalizer("minmax").fit(path)
    loader = DataLoader(DemoDataset(path, normalizer=nz), batch_size=64, num_workers=2)
    count, amax = 0, 0.0
    for batch in loader:
        count += batch["actions"].shape[0]
        amax = max(amax, float(batch["actions"].abs().max()))
    assert count == 2163 and amax <= 1 + 1e-6


def test_chunk_layouts_read_the_same_as_h5py(tmp_path):
    """The loader's reads (io.h5rows) agree with h5py for every layout, fill values and
    non-native byte order included."""
    from robocurate.io.h5rows import RowReader

    path = tmp_path / "layouts.hdf5"
    rng = np.random.default_rng(3)
    n = 9
    frames = rng.integers(0, 255, (n, 4, 5, 3), dtype=np.uint8)
    layouts = {
        "gzip_1": dict(chunks=(1, 4, 5, 3), compression="gzip"),
        "raw_1": dict(chunks=(1, 4, 5, 3)),
        "shuffle_gzip_1": dict(chunks=(1, 4, 5, 3), compression="gzip", shuffle=True),
        "gzip_4": dict(chunks=(4, 4, 5, 3), compression="gzip"),
        "contiguous": {},
    }
    with h5py.File(path, "w") as f:
        g = f.create_group("data/demo_0")
        g.create_dataset("actions", data=np.arange(n, dtype=np.float64)[:, None])
        g.create_dataset("obs/nan_first", data=np.full((n, 2), np.nan, np.float32))
        g.create_dataset("obs/unwritten", shape=(n, 2), dtype=np.int16, fillvalue=-3)
        for name, kw in layouts.items():
            g.create_dataset(f"obs/{name}", data=frames, **kw)
        g.create_dataset("obs/big_endian", data=frames[..., 0].astype(">f4"), chunks=(1, 4, 5))
        sparse = g.create_dataset("obs/sparse", shape=(n, 4, 5, 3), dtype=np.uint8,
                                  chunks=(1, 4, 5, 3), compression="gzip", fillvalue=7)
        sparse[2:5] = frames[2:5]  # chunks 0, 1 and 5.. never written
    fd = os.open(path, os.O_RDONLY)
    try:
        with h5py.File(path, "r") as f:
            modes = {k: RowReader(f[f"data/demo_0/obs/{k}"], fd).mode
                     for k in f["data/demo_0/obs"]}
            assert RowReader(f["data/demo_0/obs/gzip_1"], None).mode == "h5py"  # no fd
    finally:
        os.close(fd)
    assert modes == {"gzip_1": "chunked", "raw_1": "chunked", "shuffle_gzip_1": "chunked",
                     "gzip_4": "chunked", "contiguous": "contiguous", "big_endian": "h5py",
                     "sparse": "chunked", "nan_first": "contiguous", "unwritten": "h5py"}
    ds = DemoDataset(path, seq_len=3, frame_stack=2)
    with h5py.File(path, "r") as f:
        full = {k: f[f"data/demo_0/obs/{k}"][()] for k in ds.obs_keys}
    for i in range(len(ds)):
        item = ds[i]
        steps = np.clip(np.arange(i - 1, i + 3), 0, n - 1)
        for k in ds.obs_keys:
            got = item[f"obs/{k}"].numpy()
            assert got.dtype == full[k].dtype.newbyteorder("=")
            assert got.flags.writeable
            np.testing.assert_array_equal(got, full[k][steps])
        np.testing.assert_array_equal(item["actions"][:, 0].numpy(),
                                      np.clip(np.arange(i, i + 3), 0, n - 1))
    assert ds[0]["obs/sparse"][0, 0, 0, 0].item() == 7  # the fill value, through h5py
    assert ds[0]["obs/unwritten"][0, 0].item() == -3
    ds.close()


def test_worker_sharing_strategy_stays_in_workers(rm):
    import torch.multiprocessing as tmp

    before = tmp.get_sharing_strategy()
    ds = DemoDataset(rm)
    for _ in DataLoader(ds, batch_size=16, num_workers=2, multiprocessing_context="fork"):
        pass
    assert tmp.get_sharing_strategy() == before
    ds[0]  # the main process is not a worker: nothing changes either
    assert tmp.get_sharing_strategy() == before


def test_no_descriptor_leak(rm):
    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    if fds is None:
        pytest.skip("no /proc/self/fd")
    for _ in range(20):
        ds = DemoDataset(rm)
        ds[0]
        del ds
    assert len(os.listdir("/proc/self/fd")) <= fds + 2
