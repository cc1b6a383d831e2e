"""A lazy, multi-process-safe PyTorch dataset over one demonstration HDF5 file.

:class:`DemoDataset` follows robomimic's ``SequenceDataset`` indexing: one item per
(demo, start step) over every selected demo in numeric order (``demo_10`` after
``demo_9``). Item ``i`` at step ``t`` of a demo of length ``L`` holds

- ``obs/<key>``: steps ``t - (frame_stack - 1) ... t + seq_len - 1``, shape
  ``(frame_stack - 1 + seq_len, *feature_shape)``: the stacked history ending at ``t``
  followed by the rest of the sequence (``(frame_stack, ...)`` when ``seq_len == 1``);
- ``actions``: steps ``t ... t + seq_len - 1``, shape ``(seq_len, A)``;
- ``pad_mask``: bool ``(seq_len,)``, True where the step lies inside the demo;
- ``obs_pad_mask``: bool ``(frame_stack - 1 + seq_len,)``, the same for the obs window,
  only when ``frame_stack > 1`` (otherwise it equals ``pad_mask``);
- with ``return_index=True``: ``demo_index`` (into :attr:`DemoDataset.demos`) and
  ``step`` (``t``), int64 scalars.

Every extra key costs a shared-memory segment per batch in a multi-process DataLoader
(the dominant per-batch cost there), which is why the optional ones are off by default.

Steps outside ``[0, L)`` repeat the nearest edge frame (robomimic's ``pad_same``).
``pad_frame_stack=False`` drops the starts whose history would need padding (``t`` begins
at ``frame_stack - 1``) and ``pad_seq_length=False`` those whose sequence would run past
the end, as robomimic does; demos left with no start are skipped.

Demo length ``L`` is the number of actions. In the seed layout observations have one
more row than actions (the terminal observation after the last action); it never enters
a window, so observations and actions stay aligned step for step and ``pad_mask`` is
true for both. Without an action key ``L`` is the shortest observation length.

Lazy and fork/spawn safe: ``__init__`` reads only metadata (shapes, masks, lengths) and
closes the file again, so nothing is open when DataLoader workers start. Each process
opens the file on its first ``__getitem__`` and reopens it when ``os.getpid()`` changes
(a forked worker must not use its parent's HDF5 handle); pickling drops the handle.
Each item reads only the rows it needs, never whole datasets, through
``robocurate.io.h5rows``: contiguous unfiltered datasets and datasets chunked by whole
steps (deflate, shuffle or Blosc; images are usually stored one step per chunk for random
access) are read at the byte offsets HDF5 reports, which skips HDF5's per-call overhead
(~3.5 us, as much as a low-dim row read) and its filter pipeline; other layouts are h5py
slices. In forked DataLoader workers the dataset also switches torch's tensor sharing to
``file_system`` (``worker_sharing_strategy``), which roughly halves the cost of handing
batches to the main process.

Prefect 3.8 makes processes forked after a flow ran exit with code 1 ("DataLoader worker
exited unexpectedly"); importing robocurate's flows (``flows.runners``) repairs that in
fork children. A process that ran other Prefect flows should use
``DataLoader(..., multiprocessing_context="spawn")``.
"""

from __future__ import annotations

import bisect
import os
from pathlib import Path
from typing import Iterable

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from robocurate.demos.layout import demo_keys, detect_schema, is_numeric, iter_datasets, obs_group
from robocurate.demos.normalize import DataNormalizer, read_mask
from robocurate.io.h5rows import RowReader

__all__ = ["DemoDataset"]

_OBS_GROUP = {"robomimic": "obs", "seed": "observations"}


class DemoDataset(Dataset):
    """robomimic-style (demo, start) items of one file; see the module docstring."""

    def __init__(self, path: str | os.PathLike, obs_keys: Iterable[str] | None = None,
                 action_key: str | None = "actions", seq_len: int = 1, frame_stack: int = 1,
                 pad_frame_stack: bool = True, pad_seq_length: bool = True,
                 filter_key: str | None = None, normalizer: DataNormalizer | None = None,
                 schema: str = "auto", return_index: bool = False,
                 worker_sharing_strategy: str | None = "file_system") -> None:
        """``obs_keys=None`` loads every numeric observation dataset of the first demo
        (images included; slash-joined paths for nested groups). ``filter_key`` restricts
        to the demos listed in ``mask/<filter_key>``. With a ``normalizer``, the
        observation keys it has statistics for and the actions (when it has action
        statistics) come back normalised (float); other keys, e.g. images, come back raw
        (:attr:`normalized_keys` lists which).

        ``worker_sharing_strategy`` is the torch tensor-sharing strategy set inside
        DataLoader worker processes (never in the main process) when they first read:
        with torch's default on Linux, ``file_descriptor``, every tensor of every batch
        costs an authenticated socket connection from the main process to the worker to
        pass its descriptor, about as much CPU as reading a small item; ``file_system``
        passes a name instead (shm segments are reclaimed by ``torch_shm_manager`` even
        if a process dies). The receiver follows whatever the sender chose, so this
        changes nothing else. Applied in forked workers only: with torch 2.13 a spawned
        worker using ``file_system`` stalls ~5 s at DataLoader shutdown, so workers that
        received the dataset by pickling (spawn, forkserver) keep torch's default.
        ``None`` leaves torch's setting alone everywhere."""
        if seq_len < 1 or frame_stack < 1:
            raise ValueError(f"seq_len and frame_stack must be >= 1, got {seq_len}, {frame_stack}")
        self.path = str(Path(path))
        self.action_key = action_key
        self.seq_len = int(seq_len)
        self.frame_stack = int(frame_stack)
        self.pad_frame_stack = bool(pad_frame_stack)
        self.pad_seq_length = bool(pad_seq_length)
        self.filter_key = filter_key
        self.normalizer = normalizer
        self.return_index = bool(return_index)
        self.worker_sharing_strategy = worker_sharing_strategy
        self._unpickled = False
        self._file: h5py.File | None = None
        self._fd: int | None = None
        self._pid: int | None = None
        self._handles: dict[int, tuple[list[RowReader], RowReader | None]] = {}

        with h5py.File(self.path, "r") as f:
            self.schema = detect_schema(f) if schema == "auto" else schema
            if self.schema not in _OBS_GROUP:
                raise ValueError(f"{self.path}: schema {self.schema!r} has no observations; "
                                 f"DemoDataset reads {sorted(_OBS_GROUP)}")
            data = f.get("data")
            if not isinstance(data, h5py.Group):
                raise ValueError(f"{self.path}: no data/ group: not a demonstration file")
            demos = demo_keys(data)
            if filter_key is not None:
                wanted = set(read_mask(f, filter_key))
                missing = sorted(wanted - set(demos))
                if missing:
                    raise KeyError(f"{self.path}: mask/{filter_key} names demos that do not "
                                   f"exist: {missing[:10]}")
                demos = [d for d in demos if d in wanted]
            self.obs_keys = self._resolve_obs_keys(data, demos, obs_keys)
            self.obs_shapes: dict[str, tuple[int, ...]] = {}
            self.obs_dtypes: dict[str, np.dtype] = {}
            self.action_shape: tuple[int, ...] | None = None
            lengths = [self._demo_length(data[d], d) for d in demos]
        self.demos: list[str] = demos
        self.demo_lengths = np.asarray(lengths, dtype=np.int64)
        self._check_normalizer()

        history = self.frame_stack - 1
        n_seq = self.demo_lengths.copy()
        if not self.pad_frame_stack:
            n_seq -= history
        if not self.pad_seq_length:
            n_seq -= self.seq_len - 1
        self._n_seq = np.maximum(n_seq, 0)
        self._first = 0 if self.pad_frame_stack else history
        self._cum = np.cumsum(self._n_seq)
        self._len = int(self._cum[-1]) if len(self._cum) else 0
        # Python lists for the per-item lookups: bisect on a list is ~10x cheaper than
        # np.searchsorted on a scalar, and that overhead is paid per sample.
        self._cum_list = self._cum.tolist()
        self._lengths_list = self.demo_lengths.tolist()
        self._history = history
        self._obs_offsets = np.arange(-history, self.seq_len, dtype=np.int64)
        self._obs_mask_steps = np.arange(self._history + self.seq_len)
        self._act_offsets = np.arange(self.seq_len, dtype=np.int64)

    # ----------------------------------------------------------------- metadata
    def _obs_path(self, demo: str, key: str) -> str:
        return f"data/{demo}/{_OBS_GROUP[self.schema]}/{key}"

    def _resolve_obs_keys(self, data: h5py.Group, demos: list[str], obs_keys) -> list[str]:
        if obs_keys is not None:
            return list(obs_keys)
        if not demos:
            return []
        og = obs_group(data[demos[0]], self.schema)
        if og is None:
            return []
        return [name for name, ds in iter_datasets(og) if is_numeric(ds) and ds.ndim >= 1]

    def _demo_length(self, demo: h5py.Group, name: str) -> int:
        og = obs_group(demo, self.schema)
        obs_lengths = []
        for key in self.obs_keys:
            ds = og.get(key) if og is not None else None
            if not isinstance(ds, h5py.Dataset) or ds.ndim < 1:
                available = [n for n, _ in iter_datasets(og)] if og is not None else []
                raise KeyError(f"{self.path}: data/{name} has no observation {key!r}; "
                               f"available: {available}")
            shape = tuple(ds.shape[1:])
            if self.obs_shapes.setdefault(key, shape) != shape:
                raise ValueError(f"{self.path}: data/{name}/{key} has feature shape {shape}, "
                                 f"earlier demos {self.obs_shapes[key]}")
            self.obs_dtypes.setdefault(key, ds.dtype)
            obs_lengths.append(int(ds.shape[0]))
        if self.action_key is None:
            if not obs_lengths:
                raise ValueError("no observation keys and no action key: nothing to load")
            return min(obs_lengths)
        ds = demo.get(self.action_key)
        if not isinstance(ds, h5py.Dataset) or ds.ndim < 1:
            raise KeyError(f"{self.path}: data/{name} has no action dataset "
                           f"{self.action_key!r}; available: {sorted(demo.keys())}")
        shape = tuple(ds.shape[1:])
        if self.action_shape is None:
            self.action_shape = shape
        elif self.action_shape != shape:
            raise ValueError(f"{self.path}: data/{name}/{self.action_key} has shape {shape}, "
                             f"earlier demos {self.action_shape}")
        length = int(ds.shape[0])
        short = [k for k, n in zip(self.obs_keys, obs_lengths) if n < length]
        if short:
            raise ValueError(f"{self.path}: data/{name}: observations {short} have fewer "
                             f"rows than the {length} actions")
        return length

    def _check_normalizer(self) -> None:
        self.normalized_keys: list[str] = []
        self.normalize_actions = False
        nz = self.normalizer
        if nz is None:
            return
        for key in self.obs_keys:
            st = nz.obs_stats.get(key)
            if st is None:
                continue
            if st.shape != self.obs_shapes.get(key, st.shape):
                raise ValueError(f"normalizer statistics for {key!r} have shape {st.shape}, "
                                 f"the data {self.obs_shapes[key]}")
            self.normalized_keys.append(key)
        if self.action_key is not None and nz.action_stats is not None:
            if nz.action_stats.shape != self.action_shape:
                raise ValueError(f"normalizer action statistics have shape "
                                 f"{nz.action_stats.shape}, the data {self.action_shape}")
            self.normalize_actions = True

    # ---------------------------------------------------------- file handling
    def _h5(self) -> h5py.File:
        pid = os.getpid()
        if self._file is None or self._pid != pid:
            # A handle inherited through fork shares HDF5 state with the parent: it is
            # dropped, never used, and this process opens its own.
            self._file = None
            if self._fd is not None:
                # a forked child's copy of the descriptor: closing it leaves the parent's
                try:
                    os.close(self._fd)
                except OSError:
                    pass
            self._fd = None
            self._handles = {}
            self._file = h5py.File(self.path, "r")
            self._fd = os.open(self.path, os.O_RDONLY) if hasattr(os, "pread") else None
            self._pid = pid
            self._tune_worker_ipc()
        return self._file

    def _tune_worker_ipc(self) -> None:
        strategy = self.worker_sharing_strategy
        if (strategy is None or self._unpickled
                or torch.utils.data.get_worker_info() is None):
            return
        import torch.multiprocessing as tmp

        if strategy not in tmp.get_all_sharing_strategies():
            return
        if strategy == "file_system" and not (Path(torch.__file__).parent / "bin"
                                              / "torch_shm_manager").exists():
            return  # the daemon that reclaims named segments is missing from this build
        if tmp.get_sharing_strategy() != strategy:
            tmp.set_sharing_strategy(strategy)

    def _demo_handles(self, d: int) -> tuple[list[RowReader], RowReader | None]:
        h = self._handles.get(d)
        if h is None or self._pid != os.getpid():
            f = self._h5()
            demo = self.demos[d]
            fd = self._fd
            obs = [RowReader(f[self._obs_path(demo, k)], fd) for k in self.obs_keys]
            act = (RowReader(f[f"data/{demo}/{self.action_key}"], fd)
                   if self.action_key is not None else None)
            h = self._handles[d] = (obs, act)
        return h

    def close(self) -> None:
        if self._pid == os.getpid():
            if self._file is not None:
                self._file.close()
            if self._fd is not None:
                os.close(self._fd)
        self._file = None
        self._fd = None
        self._pid = None
        self._handles = {}

    def __del__(self) -> None:
        # The raw descriptor, unlike the h5py file, is not closed by garbage collection.
        fd, pid = self.__dict__.get("_fd"), self.__dict__.get("_pid")
        if fd is not None and pid == os.getpid():
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "DemoDataset":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_fd"] = None
        state["_pid"] = None
        state["_handles"] = {}
        state["_unpickled"] = True
        return state

    # ----------------------------------------------------------------- access
    def __len__(self) -> int:
        return self._len

    def locate(self, i: int) -> tuple[int, int]:
        """(demo index, start step) of item ``i``."""
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError(f"index {i} out of range for {self._len} items")
        d = bisect.bisect_right(self._cum_list, i)
        before = self._cum_list[d - 1] if d else 0
        return d, i - before + self._first

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        d, t = self.locate(int(i))
        length = self._lengths_list[d]
        obs_rd, act_rd = self._demo_handles(d)
        lo, hi = t - self._history, t + self.seq_len
        padded = lo < 0 or hi > length
        real_lo, real_hi = max(lo, 0), min(hi, length)
        obs_take = (np.clip(self._obs_offsets + t, 0, length - 1) - real_lo) if padded else None
        out: dict[str, torch.Tensor] = {}
        nz = self.normalizer
        for key, rd in zip(self.obs_keys, obs_rd):
            arr = rd.read(real_lo, real_hi)
            if obs_take is not None:
                arr = arr[obs_take]
            if nz is not None and key in nz.obs_stats:
                arr = nz.normalize(key, arr)
            out[f"obs/{key}"] = torch.from_numpy(arr)
        n_real = min(self.seq_len, length - t)
        if act_rd is not None:
            arr = act_rd.read(t, t + n_real)
            if n_real < self.seq_len:
                arr = arr[np.minimum(self._act_offsets, n_real - 1)]
            if self.normalize_actions:
                arr = nz.normalize_action(arr)
            out["actions"] = torch.from_numpy(arr)
        out["pad_mask"] = torch.from_numpy(self._act_offsets < n_real)
        if self._history:
            steps = self._obs_mask_steps
            out["obs_pad_mask"] = torch.from_numpy((steps >= real_lo - lo)
                                                   & (steps < real_hi - lo))
        if self.return_index:
            out["demo_index"] = torch.tensor(d, dtype=torch.int64)
            out["step"] = torch.tensor(t, dtype=torch.int64)
        return out

    def __repr__(self) -> str:
        return (f"DemoDataset({self.path!r}, schema={self.schema!r}, demos={len(self.demos)}, "
                f"items={self._len}, seq_len={self.seq_len}, frame_stack={self.frame_stack}, "
                f"obs_keys={self.obs_keys})")
