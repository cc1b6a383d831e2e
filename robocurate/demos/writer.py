"""Write demonstration HDF5 files in the standard layouts, one demo at a time.

Two layouts (see :mod:`robocurate.demos.layout`):

- ``robomimic``: ``data`` (attrs ``total``, ``env_args``) with ``demo_i/{obs/, next_obs/,
  actions, rewards, dones, states}`` and attr ``num_samples``; masks in ``mask/<name>``.
- ``seed``: the seed's ``create_dataset_structure`` + ``save_demonstration``: ``metadata``
  (attrs ``created``, ``version``, ``env_name``, ``n_demos``), ``data``, ``statistics``,
  ``models``; ``data/demo_i/{observations/ (nested groups for dict values), actions,
  rewards}`` with attrs ``success``, ``length`` (observation steps), ``total_reward``.

:class:`DemoWriter` never holds more than the demo being added. It writes to a hidden
temporary file next to ``path`` and renames it over ``path`` only on a clean close, so
a crash or an exception leaves either no file or the previous one, never half a file.

The writer writes what it is given: it does not enforce the length conventions
(robomimic: as many observations as actions; seed: one more), because checking is the
validator's job and the sample generator needs to plant violations.

Pure library: no Prefect.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from robocurate.demos import layout
from robocurate.demos.layout import demo_number

__all__ = [
    "WRITABLE_SCHEMAS",
    "DemoWriter",
    "mask_array",
    "read_mask",
    "sorted_demo_keys",
    "write_mask",
]

WRITABLE_SCHEMAS = ("robomimic", "seed")
# robomimic's EnvType.ROBOSUITE_TYPE; robomimic reads env_meta["type"].
ROBOSUITE_ENV_TYPE = 1
# Non-image chunks of about this size: big enough for gzip to work well, small enough
# that reading a few rows does not inflate a whole demo.
_CHUNK_BYTES = 64 << 10


class DemoWriter:
    """Create a demo file and add demos to it one by one.

    Usage::

        with DemoWriter(path, schema="robomimic", env_name="Lift") as w:
            w.add_demo({"robot0_eef_pos": pos}, actions, rewards=r, dones=d)
            w.write_mask("train", w.keys)

    ``env_args`` (dict or JSON string) is merged over the default
    ``{"env_name": env_name, "type": 1, "env_type": 1, "env_kwargs": {}}`` and stored as
    ``data.attrs["env_args"]`` (robomimic) or ``metadata.attrs["env_args"]`` (seed, only
    when given). ``compression`` is an h5py filter name or None; ``compression_opts``
    is used for gzip only. ``created`` overrides the seed layout's creation timestamp
    (reproducible files). ``atomic=False`` writes ``path`` directly.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        schema: str = "robomimic",
        env_name: str = "Unknown",
        compression: str | None = "gzip",
        compression_opts: int | None = 4,
        env_args: Mapping[str, Any] | str | None = None,
        *,
        created: str | None = None,
        version: str = "1.0",
        first_index: int = 0,
        atomic: bool = True,
    ) -> None:
        if schema not in WRITABLE_SCHEMAS:
            raise ValueError(f"schema must be one of {WRITABLE_SCHEMAS}, got {schema!r} "
                             "(robosuite's raw layout is an input format, not written here)")
        self.path = Path(path)
        self.schema = schema
        self.env_name = str(env_name)
        self.compression = compression
        self.compression_opts = compression_opts if compression == "gzip" else None
        self._keys: list[str] = []
        self._total = 0
        self._next_index = int(first_index)
        self._closed = False
        self._atomic = atomic

        self.path.parent.mkdir(parents=True, exist_ok=True)
        if atomic:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".writing",
                                       dir=self.path.parent)
            os.close(fd)
            self._write_path = Path(tmp)
        else:
            self._write_path = self.path
        try:
            self._f = h5py.File(self._write_path, "w")
            self._data = self._init_structure(env_args, created, version)
        except BaseException:
            self._discard()
            raise

    # ------------------------------------------------------------------ structure

    def _init_structure(self, env_args, created, version) -> h5py.Group:
        f = self._f
        given = _env_args_dict(env_args)
        if self.schema == "seed":
            meta = _untimed_group(f, "metadata")
            meta.attrs["created"] = created if created is not None else str(datetime.now(timezone.utc))
            meta.attrs["version"] = version
            meta.attrs["env_name"] = str(given.get("env_name", self.env_name))
            meta.attrs["n_demos"] = 0
            if given:
                meta.attrs["env_args"] = json.dumps(self._env_args(given))
            data = _untimed_group(f, "data")
            _untimed_group(f, "statistics")
            _untimed_group(f, "models")
        else:
            data = _untimed_group(f, "data")
            data.attrs["env_args"] = json.dumps(self._env_args(given))
            data.attrs["total"] = 0
        return data

    def _env_args(self, given: dict) -> dict:
        # robomimic reads "type"; "env_type" is the name the reference notes use.
        out = {"env_name": self.env_name, "type": ROBOSUITE_ENV_TYPE,
               "env_type": ROBOSUITE_ENV_TYPE, "env_kwargs": {}}
        out.update(given)
        return out

    # ------------------------------------------------------------------ properties

    @property
    def file(self) -> h5py.File:
        """The open file being written (the temporary file when atomic)."""
        if self._closed:
            raise ValueError(f"{self.path}: writer is closed")
        return self._f

    @property
    def keys(self) -> list[str]:
        """Demo keys written so far, in numeric order."""
        return sorted(self._keys, key=lambda k: (demo_number(k) is None, demo_number(k) or 0, k))

    @property
    def total(self) -> int:
        """Sum of the per-demo sample counts written (robomimic ``num_samples``; seed action rows)."""
        return self._total

    # ------------------------------------------------------------------ demos

    def add_demo(
        self,
        obs: Mapping[str, Any] | None,
        actions: Any | None,
        rewards: Any | None = None,
        dones: Any | None = None,
        states: Any | None = None,
        next_obs: Mapping[str, Any] | None = None,
        success: bool = False,
        attrs: Mapping[str, Any] | None = None,
        *,
        key: str | int | None = None,
    ) -> str:
        """Write one demo and return its key (``demo_{i}``, i counting from ``first_index``).

        ``obs``/``next_obs`` map names to ``(T, ...)`` arrays; dict values become
        nested groups. ``None`` leaves the group (or dataset) out. ``attrs`` are
        written last, so they can override the computed ``num_samples``/``length``.
        ``key`` picks the name (an int ``i`` means ``demo_{i}``); later automatic keys
        continue after the highest number used.
        """
        self.file  # raises once closed
        if key is None:
            name = f"demo_{self._next_index}"
        elif isinstance(key, (int, np.integer)):
            name = f"demo_{int(key)}"
        else:
            name = str(key)
        if name in self._data:
            raise ValueError(f"{self.path}: {name} already written")
        if next_obs is not None and self.schema == "seed":
            raise ValueError("the seed layout has no next_obs; pass it with schema='robomimic'")

        g = _untimed_group(self._data, name)
        try:
            self._fill_demo(g, obs, actions, rewards, dones, states, next_obs, success, attrs)
        except BaseException:
            # A caller that catches the error and goes on must not publish half a demo.
            del self._data[name]
            raise
        self._keys.append(name)
        if self.schema == "robomimic":
            self._total += int(g.attrs["num_samples"])
        else:
            a = g.get("actions")
            self._total += a.shape[0] if isinstance(a, h5py.Dataset) and a.ndim else 0
        num = demo_number(name)
        if num is not None:
            self._next_index = max(self._next_index, num + 1)
        return name

    def _fill_demo(self, g, obs, actions, rewards, dones, states, next_obs, success, attrs) -> None:
        obs_name = "observations" if self.schema == "seed" else "obs"
        n_obs = None
        if obs is not None:
            n_obs = self._write_tree(_untimed_group(g, obs_name), obs)
        if next_obs is not None:
            self._write_tree(_untimed_group(g, "next_obs"), next_obs)
        n_act = None
        if actions is not None:
            n_act = self._write(g, "actions", actions).shape[0]
        reward_sum = 0.0
        if rewards is not None:
            rewards = np.asarray(rewards)
            self._write(g, "rewards", rewards)
            reward_sum = float(np.sum(rewards, dtype=np.float64))
        if dones is not None:
            self._write(g, "dones", dones)
        if states is not None:
            self._write(g, "states", states)

        if self.schema == "robomimic":
            n = n_act if n_act is not None else (n_obs or 0)
            g.attrs["num_samples"] = np.int64(n)
            g.attrs["success"] = bool(success)
        else:
            # Seed convention: one more observation than actions.
            length = n_obs if n_obs is not None else ((n_act + 1) if n_act is not None else 0)
            g.attrs["success"] = bool(success)
            g.attrs["length"] = np.int64(length)
            g.attrs["total_reward"] = np.float64(reward_sum)
        for k, v in (attrs or {}).items():
            g.attrs[k] = v

    def write_mask(self, name: str, keys: Iterable[str]) -> None:
        """Write (or replace) ``mask/<name>`` in the file being written."""
        _put_mask(self.file, name, keys)

    # ------------------------------------------------------------------ writing

    def _write_tree(self, group: h5py.Group, tree: Mapping[str, Any]) -> int | None:
        """Write a (nested) dict of arrays; returns the first leaf's length (observation steps)."""
        n = None
        for k, v in tree.items():
            if isinstance(v, Mapping):
                m = self._write_tree(_untimed_group(group, str(k)), v)
            else:
                ds = self._write(group, str(k), v)
                m = ds.shape[0] if ds.ndim else 1
            if n is None:
                n = m
        return n

    def _write(self, group: h5py.Group, name: str, value: Any) -> h5py.Dataset:
        arr = np.asarray(value)
        kw: dict[str, Any] = {"track_times": False}
        if arr.ndim >= 1 and arr.size and arr.dtype.kind in "biuf":
            kw["chunks"] = _chunk_shape(arr)
            if self.compression is not None:
                kw["compression"] = self.compression
                kw["compression_opts"] = self.compression_opts
                # Byte shuffling regroups the bytes of multi-byte numbers; on 1-byte
                # types (images) it is a no-op that only costs time.
                kw["shuffle"] = arr.dtype.itemsize > 1
        elif arr.dtype.kind == "U":
            arr = np.char.encode(arr, "utf-8")
        return group.create_dataset(name, data=arr, **kw)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Write the totals, close, and move the file into place."""
        if self._closed:
            return
        try:
            if self.schema == "robomimic":
                self._data.attrs["total"] = np.int64(self._total)
            else:
                self._f["metadata"].attrs["n_demos"] = np.int64(len(self._keys))
            self._f.close()
            self._closed = True
            if self._atomic:
                os.chmod(self._write_path, 0o644)  # mkstemp makes 0600; data files are shared
                os.replace(self._write_path, self.path)
        except BaseException:
            self._discard()
            raise

    def abort(self) -> None:
        """Close without publishing: with ``atomic`` nothing appears at ``path``."""
        self._discard()

    def _discard(self) -> None:
        f = getattr(self, "_f", None)
        if f is not None:
            try:
                f.close()
            except Exception:
                pass
        self._closed = True
        if self._atomic:
            Path(self._write_path).unlink(missing_ok=True)

    def __enter__(self) -> "DemoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._discard()


# =========================================================================== masks


def mask_array(keys: Iterable[str]) -> np.ndarray:
    """robomimic's mask encoding (``create_hdf5_filter_key``): fixed-length byte strings."""
    keys = [k.decode("utf-8") if isinstance(k, bytes) else str(k) for k in keys]
    return np.array(keys, dtype="S") if keys else np.zeros((0,), dtype="S1")


def read_mask(f: h5py.File | h5py.Group, name: str) -> list[str] | None:
    """Demo names in ``mask/<name>`` (fixed or variable-length strings), or None when absent."""
    ds = f.get(f"mask/{name}")
    if not isinstance(ds, h5py.Dataset):
        return None
    raw = ds[()]
    if np.ndim(raw) == 0:
        raw = [raw]
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.asarray(raw).ravel()]


def write_mask(path_or_file: str | os.PathLike | h5py.File, name: str,
               demo_keys: Iterable[str]) -> bool:
    """Write ``mask/<name>`` = ``np.array(keys, dtype="S")``, replacing an existing one.

    Keys are written in the order given. With a path, the file is changed crash-safely
    through :func:`robocurate.io.h5safe.h5_additions` and left untouched (no copy)
    when the mask already holds exactly these keys; with an open file, it is written
    in place. Returns whether anything was written.
    """
    keys = [k.decode("utf-8") if isinstance(k, bytes) else str(k) for k in demo_keys]
    if isinstance(path_or_file, (h5py.File, h5py.Group)):
        if read_mask(path_or_file, name) == keys:
            return False
        _put_mask(path_or_file, name, keys)
        return True
    from robocurate.io.h5safe import h5_additions

    with h5_additions(path_or_file) as tx:
        if read_mask(tx.file, name) == keys:
            return False
        if tx.file.get(f"mask/{name}", getlink=True) is not None:
            tx.delete(f"mask/{name}")
        _put_mask(tx.writable(), name, keys)
    return True


def _put_mask(f: h5py.File | h5py.Group, name: str, keys: Iterable[str]) -> None:
    root = f.file if isinstance(f, h5py.Group) else f
    mask = root.get("mask")
    if mask is None:
        mask = _untimed_group(root, "mask")
    elif not isinstance(mask, h5py.Group):
        raise ValueError(f"{root.filename}: 'mask' exists and is not a group")
    if name in mask:
        del mask[name]
    mask.create_dataset(name, data=mask_array(keys), track_times=False)


# =========================================================================== helpers


def _env_args_dict(env_args: Mapping[str, Any] | str | None) -> dict:
    if env_args is None:
        return {}
    if isinstance(env_args, str):
        parsed = json.loads(env_args)
        if not isinstance(parsed, dict):
            raise ValueError("env_args JSON must be an object")
        return parsed
    return dict(env_args)


def _chunk_shape(arr: np.ndarray) -> tuple[int, ...]:
    # robomimic images: uint8 (T, H, W, C). One frame per chunk lets a loader that
    # samples random frames decompress only those frames.
    if arr.dtype == np.uint8 and arr.ndim == 4 and arr.shape[-1] in (1, 2, 3, 4):
        return (1, *arr.shape[1:])
    row_bytes = max(1, int(np.prod(arr.shape[1:], dtype=np.int64)) * arr.dtype.itemsize)
    rows = int(min(arr.shape[0], max(1, _CHUNK_BYTES // row_bytes)))
    return (max(1, rows), *arr.shape[1:])


def _untimed_group(parent: h5py.Group, name: str) -> h5py.Group:
    # HDF5 stamps objects with their creation time unless told not to; untimed
    # objects make a file's bytes a function of its content (reproducible samples).
    g = parent.get(name)
    if isinstance(g, h5py.Group):
        return g
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    return h5py.Group(h5py.h5g.create(parent.id, name.encode("utf-8"), gcpl=gcpl))


def sorted_demo_keys(data: h5py.Group) -> list[str]:
    """Child groups of ``data`` (the demos) in robomimic's numeric order."""
    return [k for k in layout.demo_keys(data) if isinstance(data.get(k), h5py.Group)]
