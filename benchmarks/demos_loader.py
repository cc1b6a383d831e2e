"""DemoDataset through a multi-process DataLoader against direct h5py slice reads.

Data: a robomimic-layout file written here with h5py (reused while its parameters stay
the same, at /work/bench-data/demos-loader/): ``--demos`` demos of ``--steps`` steps,
low-dim float32 observations ``eef_pos (3)``, ``joint_pos (7)``, ``object (10)``, an
84x84x3 uint8 image ``agentview_image`` (gzip, one frame per chunk) and float32
``actions (7)``.

Timed, over every (demo, step) item (``seq_len=1``, ``frame_stack=1``) in one fixed
random order, alternating, ``--repeats`` times each, worker start-up included in both:

(a) loader: ``DataLoader(DemoDataset(path), batch_size=32, num_workers=2,
    sampler=<the order>)`` iterated to the end in the parent (batches collated and
    shipped back through shared memory, as in training);
(b) direct: a fork ``ProcessPoolExecutor(2)``; each worker opens the file, looks up
    the datasets once per demo and reads ``ds[t:t + 1]`` of the same five datasets for
    its half of the same order: h5py slicing as one would write it by hand, with
    nothing collated or sent back. (The loader reads these plain layouts at the
    offsets HDF5 reports instead of through h5py, see ``robocurate.demos.loader``;
    that is how it makes up for the collation and transfer it does on top.)
(c) for information, not in the ratio: (a) with ``worker_sharing_strategy=None``, i.e.
    torch's default ``file_descriptor`` sharing in the workers.

The ratio is best-loader samples/s over best-direct samples/s (target >= 0.7). The
loader also pays for what the direct loop skips: building tensors, collating, and passing
every batch to the parent through shared memory; with nproc = 2 the parent competes with
the two workers for the cores. CPU seconds of all processes are recorded too: on a shared
machine they move less with other people's load than wall time does.

    .venv/bin/python benchmarks/demos_loader.py [--demos 200] [--steps 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

NAME = "demos_loader"
TARGET = 0.7
LOW_DIM = {"eef_pos": 3, "joint_pos": 7, "object": 10}
IMAGE = "agentview_image"
ACTION_DIM = 7
BATCH = 32
WORKERS = 2


def generate(path: Path, demos: int, steps: int, seed: int = 0) -> float:
    import h5py
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:84, 0:84].astype(np.float32)
    t0 = time.perf_counter()
    tmp = path.with_suffix(".tmp")
    with h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps({"env_name": "bench", "type": 1, "env_kwargs": {}})
        for d in range(demos):
            g = data.create_group(f"demo_{d}")
            for key, dim in LOW_DIM.items():
                walk = np.cumsum(rng.normal(0, 0.01, (steps, dim)), axis=0)
                g.create_dataset(f"obs/{key}", data=walk.astype(np.float32))
            # Smooth scene plus a moving blob plus sensor noise: compresses like camera
            # frames (a few KB per frame), unlike pure noise or flat colour.
            cx = 42 + 30 * np.sin(np.linspace(0, 3, steps) + d)
            frames = np.empty((steps, 84, 84, 3), np.uint8)
            base = np.stack([xx * 2, yy * 2, (xx + yy)], -1)
            for t in range(steps):
                blob = 120 * np.exp(-((xx - cx[t]) ** 2 + (yy - 42) ** 2) / 80.0)
                img = base + blob[..., None] + rng.normal(0, 3, (84, 84, 3))
                frames[t] = np.clip(img, 0, 255).astype(np.uint8)
            g.create_dataset(f"obs/{IMAGE}", data=frames, chunks=(1, 84, 84, 3),
                             compression="gzip", compression_opts=4)
            g.create_dataset("actions", data=rng.uniform(-1, 1, (steps, ACTION_DIM))
                             .astype(np.float32))
            g.create_dataset("rewards", data=np.zeros(steps, np.float32))
            g.create_dataset("dones", data=(np.arange(steps) == steps - 1).astype(np.uint8))
            g.attrs["num_samples"] = steps
        data.attrs["total"] = demos * steps
        f.create_dataset("mask/train", data=np.array([f"demo_{d}" for d in range(demos)], "S"))
    tmp.replace(path)
    return time.perf_counter() - t0


def ensure_file(root: Path, demos: int, steps: int) -> tuple[Path, float | None]:
    params = json.dumps({"demos": demos, "steps": steps, "image": [84, 84, 3],
                         "low_dim": LOW_DIM, "version": 1}, sort_keys=True)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"robomimic_{demos}x{steps}.hdf5"
    marker = path.with_suffix(".params.json")
    if path.is_file() and marker.is_file() and marker.read_text() == params:
        return path, None
    secs = generate(path, demos, steps)
    marker.write_text(params)
    return path, secs


def _direct_worker(args) -> tuple[int, int]:
    import h5py

    path, pairs = args
    keys = [f"obs/{k}" for k in LOW_DIM] + [f"obs/{IMAGE}", "actions"]
    n_bytes = 0
    handles: dict[str, list] = {}
    with h5py.File(path, "r") as f:
        for demo, t in pairs:
            h = handles.get(demo)
            if h is None:
                h = handles[demo] = [f[f"data/{demo}/{k}"] for k in keys]
            for ds in h:
                n_bytes += ds[t:t + 1].nbytes
    return len(pairs), n_bytes


def run_direct(path: Path, pairs: list[tuple[str, int]]) -> tuple[float, int]:
    half = (len(pairs) + 1) // 2
    parts = [(str(path), pairs[:half]), (str(path), pairs[half:])]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("fork")) as pool:
        done = list(pool.map(_direct_worker, parts))
    dt = time.perf_counter() - t0
    return dt, sum(n for n, _ in done)


def run_loader(path: Path, order: list[int], sharing: str | None = "file_system"
               ) -> tuple[float, int]:
    from torch.utils.data import DataLoader

    from robocurate.demos.loader import DemoDataset

    t0 = time.perf_counter()
    ds = DemoDataset(path, obs_keys=list(LOW_DIM) + [IMAGE], worker_sharing_strategy=sharing)
    loader = DataLoader(ds, batch_size=BATCH, num_workers=WORKERS, sampler=order,
                        multiprocessing_context="fork")
    n = 0
    for batch in loader:
        n += batch["actions"].shape[0]
    dt = time.perf_counter() - t0
    ds.close()
    return dt, n


def _cpu_seconds() -> float:
    """CPU of this process and of its reaped children (the loader's and the pool's
    workers are joined before each run returns)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=_common.BENCH_DATA / "demos-loader")
    ap.add_argument("--demos", type=int, default=200)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-default-ipc", action="store_true",
                    help="skip the informational loader run with torch's default "
                         "tensor sharing in the workers (worker_sharing_strategy=None)")
    args = ap.parse_args()

    import numpy as np
    import torch

    from robocurate.demos.loader import DemoDataset

    torch.set_num_threads(1)
    path, gen_s = ensure_file(args.data, args.demos, args.steps)
    size_mb = path.stat().st_size / 1e6
    print(f"data {path} ({size_mb:.0f} MB): " +
          (f"generated in {gen_s:.1f} s" if gen_s else "reused"))

    probe = DemoDataset(path, obs_keys=list(LOW_DIM) + [IMAGE])
    n_items = len(probe)
    order = np.random.default_rng(0).permutation(n_items).tolist()
    pairs = []
    for i in order:
        d, t = probe.locate(i)
        pairs.append((probe.demos[d], t))
    item_bytes = sum(v.numel() * v.element_size() for v in probe[0].values())
    probe.close()

    # one untimed pass of each: page cache and imports warm for both sides alike
    run_direct(path, pairs[: 4 * BATCH])
    run_loader(path, order[: 4 * BATCH])

    variants = [("loader", lambda: run_loader(path, order)),
                ("direct", lambda: run_direct(path, pairs))]
    if not args.no_default_ipc:
        variants.append(("loader_torch_default_ipc", lambda: run_loader(path, order, None)))
    runs = {name: [] for name, _ in variants}
    cpu = {name: [] for name, _ in variants}
    steal0 = _common.steal_seconds()
    for r in range(args.repeats):
        for name, fn in variants:
            c0 = _cpu_seconds()
            dt, n = fn()
            c = _cpu_seconds() - c0
            if n != n_items:
                raise SystemExit(f"{name} produced {n} items, expected {n_items}")
            runs[name].append(dt)
            cpu[name].append(c)
            print(f"  run {r + 1} {name:<24}: {dt:6.2f} s  {n / dt:8.0f} samples/s  "
                  f"cpu {c:5.2f} s")
    steal = _common.steal_seconds() - steal0

    rows, rates, cpu_us = [], {}, {}
    for name in runs:
        best = min(runs[name])
        rates[name] = n_items / best
        cpu_us[name] = min(cpu[name]) / n_items * 1e6
        rows.append([name, n_items, best, statistics.median(runs[name]), rates[name],
                     rates[name] * item_bytes / 1e6, cpu_us[name]])
    ratio = rates["loader"] / rates["direct"]
    cpu_ratio = cpu_us["direct"] / cpu_us["loader"]
    print()
    print(_common.table(rows, ["variant", "items", "best s", "median s", "samples/s",
                               "MB/s (decoded)", "cpu us/item"]))
    load = os.getloadavg()
    print(f"\nCPU per item, direct/loader: {cpu_ratio:.3f} (all processes; less sensitive to "
          f"other load than wall time). steal {steal:.1f} s, loadavg {load[0]:.2f}")
    print(f"RATIO {NAME}: {ratio:.3f} (target >= {TARGET})")

    out = _common.write_result(NAME, {
        "variants": {"loader": "DataLoader(DemoDataset, batch_size=32, num_workers=2), "
                                "worker_sharing_strategy='file_system' (default)",
                     "direct": "ProcessPoolExecutor(2), ds[t:t+1] per key, nothing sent back",
                     "loader_torch_default_ipc": "loader with worker_sharing_strategy=None"},
        "parameters": {"demos": args.demos, "steps": args.steps, "batch_size": BATCH,
                       "num_workers": WORKERS, "seq_len": 1, "frame_stack": 1,
                       "repeats": args.repeats, "image": [84, 84, 3],
                       "image_compression": "gzip-4, one frame per chunk",
                       "low_dim": LOW_DIM, "action_dim": ACTION_DIM,
                       "start_method": "fork", "file_mb": round(size_mb, 1),
                       "generation_s": gen_s},
        "items": n_items,
        "item_bytes_decoded": item_bytes,
        "runs_s": runs,
        "cpu_s": cpu,
        "samples_per_s": {k: round(v, 1) for k, v in rates.items()},
        "cpu_us_per_item": {k: round(v, 1) for k, v in cpu_us.items()},
        "cpu_ratio_direct_over_loader": round(cpu_ratio, 4),
        "steal_s": round(steal, 2),
        "ratio": round(ratio, 4),
        "target": TARGET,
        "meets_target": ratio >= TARGET,
    })
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
