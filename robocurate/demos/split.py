"""Train/validation masks, as robomimic's ``scripts/split_train_val.py`` writes them.

``mask/train`` and ``mask/valid`` hold byte-string arrays of demo names. The split is a
shuffle of the demo keys (taken in numeric order, so HDF5's storage order does not
matter) with a seeded generator; the first ``round(n * valid_fraction)`` (half up, at
least one when there are two or more demos and the fraction is positive, at most
``n - 1`` so training is never empty: a single demo is all training) are validation.
Both masks are stored in numeric order.

The file is changed through :func:`robocurate.io.h5safe.h5_additions`: the original is
never opened for writing, and a re-run that finds the masks already right writes
(and copies) nothing.

Pure library: no Prefect.
"""

from __future__ import annotations

import math
import os

import h5py
import numpy as np

from robocurate.demos.writer import _put_mask, read_mask, sorted_demo_keys
from robocurate.io.h5safe import h5_additions

__all__ = ["MASK_NAMES", "plan_split", "split_train_valid"]

MASK_NAMES = ("train", "valid")


def plan_split(keys: list[str], valid_fraction: float = 0.1, seed: int = 0) -> dict[str, list[str]]:
    """The split of ``keys`` (given in numeric order): ``{"train": [...], "valid": [...]}``."""
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    n = len(keys)
    # Half up rather than Python's round-half-even: 5 demos at 0.1 and 25 at 0.1
    # should both round the way a reader expects.
    n_valid = int(math.floor(n * valid_fraction + 0.5))
    if n > 1 and valid_fraction > 0:
        n_valid = max(n_valid, 1)
    n_valid = min(n_valid, max(n - 1, 0))
    order = np.random.default_rng(seed).permutation(n)
    valid = set(int(i) for i in order[:n_valid])
    return {"train": [k for i, k in enumerate(keys) if i not in valid],
            "valid": [k for i, k in enumerate(keys) if i in valid]}


def split_train_valid(
    path: str | os.PathLike,
    valid_fraction: float = 0.1,
    seed: int = 0,
    overwrite: bool = True,
) -> dict:
    """Write ``mask/train`` and ``mask/valid`` for the demos of ``path``.

    Existing masks of those names are replaced when ``overwrite`` and kept otherwise
    (missing ones are still written). Returns ``{"train": [...], "valid": [...],
    "changed": bool, "kept": [names of differing masks left as they were]}``; the
    lists are what the file holds afterwards.

    Raises ValueError when the file has no ``data`` group or no demos in it, OSError
    when it cannot be opened as HDF5.
    """
    with h5_additions(path) as tx:
        f = tx.file
        data = f.get("data")
        if not isinstance(data, h5py.Group):
            raise ValueError(f"{path}: no 'data' group: not a demo file")
        keys = sorted_demo_keys(data)
        if not keys:
            raise ValueError(f"{path}: 'data' holds no demos")
        mask = f.get("mask")
        if mask is not None and not isinstance(mask, h5py.Group):
            raise ValueError(f"{path}: 'mask' exists and is not a group")
        want = plan_split(keys, valid_fraction, seed)
        result: dict = {"changed": False, "kept": []}
        to_write: list[str] = []
        for name in MASK_NAMES:
            have = read_mask(f, name)
            exists = f.get(f"mask/{name}", getlink=True) is not None
            if have == want[name]:
                result[name] = have
            elif exists and not overwrite:
                result[name] = have if have is not None else []
                result["kept"].append(name)
            else:
                result[name] = want[name]
                to_write.append(name)
        for name in to_write:
            if tx.file.get(f"mask/{name}", getlink=True) is not None:
                tx.delete(f"mask/{name}")
            _put_mask(tx.writable(), name, want[name])
        result["changed"] = bool(to_write)
    return {"train": result["train"], "valid": result["valid"],
            "changed": result["changed"], "kept": result["kept"]}
