"""The layouts of demonstration HDF5 files and how to walk them.

- ``robomimic``: ``data/demo_i/{obs, next_obs, actions, rewards, dones, states}``, attrs
  ``num_samples`` per demo and ``total``/``env_args`` on ``data``, masks in ``mask/<key>``.
  Observations and actions have the same length.
- ``seed``: the seed's ``create_dataset_structure``/``save_demonstration`` layout:
  ``metadata/`` attrs, ``data/demo_i/{observations/, actions, rewards}`` with attrs
  ``success``, ``length``, ``total_reward``. Observations have one more step than actions.
- ``robosuite``: robosuite's raw demo files (``data/demo_i/{states, actions}``, attr
  ``model_file``), the input of robomimic's converter: no observations at all.
"""

from __future__ import annotations

import re

import h5py
import numpy as np

SCHEMAS = ("robomimic", "seed", "robosuite")
_DEMO = re.compile(r"^demo_(\d+)$")


def demo_keys(data: h5py.Group) -> list[str]:
    """Demo group names in numeric order (demo_10 after demo_9); others at the end, sorted."""
    numbered, other = [], []
    for k in data.keys():
        m = _DEMO.match(k)
        (numbered if m else other).append((int(m.group(1)) if m else 0, k))
    return [k for _, k in sorted(numbered)] + sorted(k for _, k in other)


def demo_number(key: str) -> int | None:
    m = _DEMO.match(key)
    return int(m.group(1)) if m else None


def detect_schema(f: h5py.File) -> str:
    """Which layout a file uses, from its first demo (robomimic when undecidable)."""
    data = f.get("data")
    if not isinstance(data, h5py.Group):
        return "robomimic"
    keys = demo_keys(data)
    demo = data[keys[0]] if keys else None
    if isinstance(demo, h5py.Group):
        if "observations" in demo:
            return "seed"
        if "obs" in demo:
            return "robomimic"
        if "model_file" in demo.attrs or ("states" in demo and "actions" in demo):
            return "robosuite"
    if "metadata" in f:
        return "seed"
    return "robomimic"


def obs_group(demo: h5py.Group, schema: str) -> h5py.Group | None:
    name = "observations" if schema == "seed" else "obs"
    g = demo.get(name)
    return g if isinstance(g, h5py.Group) else None


def iter_datasets(group: h5py.Group, prefix: str = ""):
    """(relative path, dataset) for every dataset below ``group``, in sorted order."""
    names: list[str] = []
    group.visit(lambda n: names.append(n) if isinstance(group[n], h5py.Dataset) else None)
    for n in sorted(names):
        yield (f"{prefix}{n}", group[n])


def is_numeric(ds: h5py.Dataset) -> bool:
    return ds.dtype.kind in "biuf"


def is_image(name: str, ds: h5py.Dataset) -> bool:
    """uint8, channels-last (T, H, W, C) with C in 1..4: robomimic's image convention."""
    return ds.dtype == np.uint8 and ds.ndim == 4 and ds.shape[-1] in (1, 3, 4)


def is_low_dim(ds: h5py.Dataset) -> bool:
    return is_numeric(ds) and ds.ndim in (1, 2) and ds.dtype.kind in "biuf"


def iter_row_blocks(ds: h5py.Dataset, max_bytes: int = 32 << 20):
    """(start, block) over axis 0 in chunk-aligned blocks of at most ``max_bytes``:
    streams a dataset instead of loading it whole."""
    n = ds.shape[0] if ds.ndim else 1
    if ds.ndim == 0:
        yield 0, np.asarray(ds[()])
        return
    row_bytes = max(1, int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize)
    step = max(1, max_bytes // row_bytes)
    if ds.chunks:
        step = max(ds.chunks[0], (step // ds.chunks[0]) * ds.chunks[0])
    for start in range(0, n, step):
        yield start, ds[start:start + step]
