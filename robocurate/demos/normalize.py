"""Per-key normalisation statistics of demonstration HDF5 files, and their application.

:class:`DataNormalizer` replaces the seed's ``DataNormalizer``, which collected every
observation of the dataset in Python lists, concatenated them and added ``1e-6`` to the
std (so its inverse never restored constant dimensions and it could not fit a dataset
larger than memory). Here fitting streams demo by demo and block by block
(:func:`~robocurate.demos.layout.iter_row_blocks`) into :class:`~robocurate.stats.RunningStats`,
whose Chan merges are exact in float64 across demos and files: the fitted mean/std equal
numpy's over the concatenated data to ~1e-12 relative.

Keys are observation dataset paths relative to the demo's observation group
(``obs/`` for robomimic, ``observations/`` for the seed layout), slash-joined for nested
groups (``datagen_info/eef_pose/franka``). Observation and action statistics are kept
apart because robomimic files may hold an observation that is called ``actions`` too
(Isaac Lab records ``obs/actions``).

Modes (``y`` normalised, ``x`` raw, per dimension):

- ``gaussian``: ``y = (x - mean) / std``;
- ``minmax``: ``y = (x - (max + min) / 2) / ((max - min) / 2)``, i.e. ``[min, max]`` maps
  onto ``[-1, 1]`` (robomimic's action convention).

Degenerate dimensions (std, or half-range for minmax, ``<= eps * (1 + |centre|)``) get
scale 1 and keep the centre as offset: a constant dimension maps to exactly 0 and the
inverse restores it exactly, instead of blowing float noise up by ``1/eps``. The inverse
is always ``x = y * scale + offset`` with the same arrays, so a round trip is exact up to
float rounding of the input dtype.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import h5py
import numpy as np

from robocurate.demos.layout import (
    demo_keys,
    detect_schema,
    is_low_dim,
    is_numeric,
    iter_datasets,
    iter_row_blocks,
    obs_group,
)
from robocurate.io.atomic import atomic_write_json
from robocurate.stats import RunningStats

__all__ = ["DataNormalizer", "FORMAT", "FORMAT_VERSION", "MODES", "KeyStats",
           "read_mask", "open_files"]

FORMAT = "robocurate.demos.normalizer"
FORMAT_VERSION = 1
MODES = ("gaussian", "minmax")


@dataclass
class KeyStats:
    """Fitted statistics of one key, per element of the feature shape (float64)."""

    shape: tuple[int, ...]
    count: int
    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray

    @classmethod
    def from_running(cls, shape: tuple[int, ...], st: RunningStats) -> "KeyStats":
        return cls(shape=tuple(shape), count=int(st.count),
                   **{k: np.asarray(v, dtype=np.float64).reshape(shape)
                      for k, v in (("mean", st.mean), ("std", st.std),
                                   ("min", st.min), ("max", st.max))})

    def to_dict(self) -> dict:
        return {"shape": list(self.shape), "count": self.count,
                **{k: getattr(self, k).ravel().tolist() for k in ("mean", "std", "min", "max")}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "KeyStats":
        shape = tuple(int(s) for s in d["shape"])
        return cls(shape=shape, count=int(d["count"]),
                   **{k: np.asarray(d[k], dtype=np.float64).reshape(shape)
                      for k in ("mean", "std", "min", "max")})


class _TreeAccumulator:
    """Merges RunningStats as they arrive in a balanced binary tree (a binary counter):
    the rounding of ``merge_all`` with O(log n) memory, so fitting a dataset of many
    thousands of demos keeps only a handful of partials per key."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, RunningStats]] = []

    def add(self, st: RunningStats) -> None:
        size = 1
        while self._stack and self._stack[-1][0] == size:
            _, prev = self._stack.pop()
            st = prev.merge(st)
            size *= 2
        self._stack.append((size, st))

    def result(self) -> RunningStats | None:
        if not self._stack:
            return None
        out = self._stack[-1][1]
        for _, st in reversed(self._stack[:-1]):
            out = st.merge(out)
        return out


def read_mask(f: h5py.File, key: str) -> list[str]:
    """Demo names of ``mask/<key>`` (robomimic's filter keys: byte strings)."""
    masks = f.get("mask")
    if not isinstance(masks, h5py.Group) or key not in masks:
        available = sorted(masks.keys()) if isinstance(masks, h5py.Group) else []
        raise KeyError(f"filter key {key!r} not in {f.filename}: available masks "
                       f"{available or 'none (no mask/ group)'}")
    names = []
    for v in np.asarray(masks[key][()]).ravel():
        names.append(v.decode("utf-8") if isinstance(v, bytes) else str(v))
    return names


def open_files(paths_or_files) -> list[tuple[h5py.File, bool]]:
    """(file, opened_here) for a path, an open file, or an iterable of either."""
    if isinstance(paths_or_files, (str, os.PathLike, h5py.File)):
        paths_or_files = [paths_or_files]
    out: list[tuple[h5py.File, bool]] = []
    try:
        for p in paths_or_files:
            if isinstance(p, h5py.File):
                out.append((p, False))
            else:
                out.append((h5py.File(p, "r"), True))
    except BaseException:
        for f, mine in out:
            if mine:
                f.close()
        raise
    return out


def _selected_demos(f: h5py.File, mask) -> list[str]:
    data = f.get("data")
    if not isinstance(data, h5py.Group):
        raise ValueError(f"{f.filename}: no data/ group: not a demonstration file")
    keys = demo_keys(data)
    if mask is None:
        return keys
    wanted = set(read_mask(f, mask) if isinstance(mask, str) else mask)
    missing = sorted(wanted - set(keys))
    if missing and isinstance(mask, str):
        raise KeyError(f"{f.filename}: mask/{mask} names demos that do not exist: {missing[:10]}")
    return [k for k in keys if k in wanted]


def _feature_width(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


class DataNormalizer:
    """Fits per-key statistics on demonstration files and (de)normalises with them.

    ``fit`` -> ``normalize_obs`` / ``normalize_action`` and their inverses; arrays may be
    numpy arrays or torch tensors of shape ``(..., *feature_shape)``, and the result is
    of the same kind (and device). Floating inputs keep their dtype; integer and bool
    inputs (uint8 images, flags) come back as float32.
    """

    def __init__(self, mode: str = "gaussian", eps: float = 1e-8) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.eps = float(eps)
        self.obs_stats: dict[str, KeyStats] = {}
        self.action_stats: KeyStats | None = None
        self.action_key: str | None = None
        self.sources: list[str] = []
        self.filter: Any = None
        self._affine: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self._cast: dict[tuple, tuple[Any, Any]] = {}

    # ------------------------------------------------------------------ fitting
    def fit(self, paths_or_files, obs_keys: Iterable[str] | None = None,
            action_key: str | None = "actions", mask=None,
            schema: str = "auto") -> "DataNormalizer":
        """Fit on one or more files (paths or open ``h5py.File``), streaming.

        ``obs_keys=None`` takes every low-dim observation dataset (numeric, 1-D or 2-D) of
        every selected demo; explicit keys may be of any numeric shape and must exist in
        every selected demo. ``action_key=None`` fits no action statistics. ``mask`` is a
        filter key (``mask/<key>`` of each file, e.g. ``"train"``) or a collection of demo
        names. Replaces any earlier fit; returns ``self``.
        """
        wanted = None if obs_keys is None else list(obs_keys)
        obs_acc: dict[str, _TreeAccumulator] = {}
        shapes: dict[str, tuple[int, ...]] = {}
        act_acc = _TreeAccumulator()
        act_shape: tuple[int, ...] | None = None
        sources: list[str] = []
        n_demos = 0

        def feed(acc_map, name: str, ds: h5py.Dataset, where: str) -> None:
            nonlocal act_shape
            shape = tuple(ds.shape[1:])
            known = act_shape if acc_map is None else shapes.get(name)
            if known is not None and known != shape:
                raise ValueError(f"{where}: {name!r} has feature shape {shape}, "
                                 f"earlier demos {known}")
            if acc_map is None:
                act_shape, acc = shape, act_acc
            else:
                shapes[name] = shape
                acc = acc_map.setdefault(name, _TreeAccumulator())
            if ds.ndim == 0 or ds.shape[0] == 0:
                return
            width = _feature_width(shape)
            for _, block in iter_row_blocks(ds):
                acc.add(RunningStats.from_array(np.asarray(block).reshape(len(block), width)))

        files = open_files(paths_or_files)
        try:
            for f, _ in files:
                sources.append(str(f.filename))
                sch = detect_schema(f) if schema == "auto" else schema
                for dk in _selected_demos(f, mask):
                    demo = f["data"][dk]
                    where = f"{f.filename}:data/{dk}"
                    n_demos += 1
                    og = obs_group(demo, sch)
                    if wanted is None:
                        if og is not None:
                            for name, ds in iter_datasets(og):
                                if is_low_dim(ds):
                                    feed(obs_acc, name, ds, where)
                    else:
                        available = ([n for n, _ in iter_datasets(og)] if og is not None else [])
                        for name in wanted:
                            ds = og.get(name) if og is not None else None
                            if not isinstance(ds, h5py.Dataset):
                                raise KeyError(f"{where}: no observation {name!r}; available: "
                                               f"{available}")
                            if not is_numeric(ds):
                                raise TypeError(f"{where}: observation {name!r} is not numeric "
                                                f"({ds.dtype})")
                            feed(obs_acc, name, ds, where)
                    if action_key is not None:
                        ds = demo.get(action_key)
                        if not isinstance(ds, h5py.Dataset):
                            raise KeyError(f"{where}: no action dataset {action_key!r}; "
                                           f"available: {sorted(demo.keys())}")
                        feed(None, action_key, ds, where)
        finally:
            for f, mine in files:
                if mine:
                    f.close()
        if n_demos == 0:
            raise ValueError(f"no demos to fit on in {sources} (mask={mask!r})")

        self.obs_stats = {}
        for name in sorted(obs_acc):
            st = obs_acc[name].result()
            if st is not None:
                self.obs_stats[name] = KeyStats.from_running(shapes[name], st)
        self.action_key = action_key
        st = act_acc.result()
        self.action_stats = (KeyStats.from_running(act_shape, st)
                             if st is not None and act_shape is not None else None)
        self.sources = sources
        self.filter = mask if mask is None or isinstance(mask, str) else sorted(mask)
        self._reset_cache()
        return self

    # --------------------------------------------------------------- transforms
    @property
    def obs_keys(self) -> list[str]:
        return list(self.obs_stats)

    def _reset_cache(self) -> None:
        self._affine.clear()
        self._cast.clear()

    def _stats(self, kind: str, key: str) -> KeyStats:
        if kind == "action":
            if self.action_stats is None:
                raise KeyError("no action statistics were fitted (action_key=None or not fitted)")
            return self.action_stats
        try:
            return self.obs_stats[key]
        except KeyError:
            raise KeyError(f"no normalisation statistics for observation {key!r}; "
                           f"available: {sorted(self.obs_stats)}") from None

    def affine(self, key: str, kind: str = "obs") -> tuple[np.ndarray, np.ndarray]:
        """(offset, scale) in float64 with ``y = (x - offset) / scale``."""
        cache_key = (kind, key)
        hit = self._affine.get(cache_key)
        if hit is not None:
            return hit
        st = self._stats(kind, key)
        if self.mode == "gaussian":
            offset, scale = st.mean.copy(), st.std.copy()
        else:
            # Midpoint and half-range computed as written are exact for finite inputs
            # of equal sign; they map min/max onto -1/+1 up to one rounding.
            offset = st.min / 2 + st.max / 2
            scale = st.max / 2 - st.min / 2
        degenerate = ~(scale > self.eps * (1.0 + np.abs(offset)))
        scale = np.where(degenerate, 1.0, scale)
        self._affine[cache_key] = (offset, scale)
        return offset, scale

    def _apply(self, kind: str, key: str, x, inverse: bool):
        offset, scale = self.affine(key, kind)
        shape = offset.shape
        torch = sys.modules.get("torch")
        is_tensor = torch is not None and isinstance(x, torch.Tensor)
        if not is_tensor:
            x = np.asarray(x)
        xshape = tuple(x.shape)
        if len(xshape) < len(shape) or (shape and xshape[len(xshape) - len(shape):] != shape):
            what = "action" if kind == "action" else f"observation {key!r}"
            raise ValueError(f"{what}: expected shape (..., {', '.join(map(str, shape))}), "
                             f"got {xshape}")
        if is_tensor:
            dtype = x.dtype if x.dtype.is_floating_point else torch.float32
            ck = (kind, key, "torch", dtype, x.device)
            pair = self._cast.get(ck)
            if pair is None:
                pair = (torch.as_tensor(offset, dtype=dtype, device=x.device),
                        torch.as_tensor(scale, dtype=dtype, device=x.device))
                self._cast[ck] = pair
            x = x.to(dtype)
        else:
            dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float32)
            ck = (kind, key, "numpy", dtype)
            pair = self._cast.get(ck)
            if pair is None:
                pair = (offset.astype(dtype), scale.astype(dtype))
                self._cast[ck] = pair
            x = x.astype(dtype, copy=False)
        off, sc = pair
        return x * sc + off if inverse else (x - off) / sc

    def normalize(self, key: str, x):
        """Normalise one observation key."""
        return self._apply("obs", key, x, inverse=False)

    def denormalize(self, key: str, x):
        return self._apply("obs", key, x, inverse=True)

    def normalize_obs(self, obs: Mapping[str, Any], strict: bool = True) -> dict:
        """Normalise every key of ``obs``. With ``strict=False`` keys without statistics
        (images, say) pass through unchanged instead of raising KeyError."""
        return {k: (self.normalize(k, v) if strict or k in self.obs_stats else v)
                for k, v in obs.items()}

    def denormalize_obs(self, obs: Mapping[str, Any], strict: bool = True) -> dict:
        return {k: (self.denormalize(k, v) if strict or k in self.obs_stats else v)
                for k, v in obs.items()}

    def normalize_action(self, a):
        return self._apply("action", self.action_key or "", a, inverse=False)

    def denormalize_action(self, a):
        return self._apply("action", self.action_key or "", a, inverse=True)

    # ---------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "mode": self.mode,
            "eps": self.eps,
            "obs_keys": self.obs_keys,
            "action_key": self.action_key,
            "obs": {k: st.to_dict() for k, st in self.obs_stats.items()},
            "action": None if self.action_stats is None else self.action_stats.to_dict(),
            "sources": list(self.sources),
            "filter": self.filter,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DataNormalizer":
        if d.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} record (format={d.get('format')!r})")
        version = int(d.get("version", 0))
        if version > FORMAT_VERSION or version < 1:
            raise ValueError(f"unsupported {FORMAT} version {version} "
                             f"(this code reads 1..{FORMAT_VERSION})")
        self = cls(mode=d["mode"], eps=float(d.get("eps", 1e-8)))
        self.obs_stats = {k: KeyStats.from_dict(v) for k, v in d["obs"].items()}
        self.action_key = d.get("action_key")
        self.action_stats = None if d.get("action") is None else KeyStats.from_dict(d["action"])
        self.sources = list(d.get("sources") or [])
        self.filter = d.get("filter")
        return self

    def save(self, path: str | os.PathLike) -> Path:
        """Atomic JSON write; floats are written with repr, so load() restores them exactly."""
        d = self.to_dict()
        _check_finite(d)
        atomic_write_json(path, d)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DataNormalizer":
        import json
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def __repr__(self) -> str:
        act = None if self.action_stats is None else self.action_stats.shape
        return (f"DataNormalizer(mode={self.mode!r}, obs_keys={self.obs_keys}, "
                f"action_key={self.action_key!r}, action_shape={act})")


def _check_finite(d: dict) -> None:
    # json.dumps would write NaN/Infinity, which is not JSON and other readers reject.
    for where, st in [("action", d["action"])] + [(f"obs/{k}", v) for k, v in d["obs"].items()]:
        if st is None:
            continue
        for field in ("mean", "std", "min", "max"):
            if not all(math.isfinite(v) for v in st[field]):
                raise ValueError(f"{where}: non-finite {field} (NaN/inf in the data); "
                                 "clean the data before fitting a normaliser")
