"""Stage 2: event dataset -> fixed-rate binned dataset (state = screen, actions = input).

Same rules as the July-2025 ``02_event_dataset_to_binned_dataset.py`` (reference
``react-tactile-and-owa.md`` 2.3):

- per split, per ``episode_path`` (sorted), events sorted by ``timestamp_ns`` (stable);
- ``bin_ns = int(1e9 / fps)``; bins start at the episode's first event and run while
  ``bin_start <= last event``; an event belongs to the bin with ``ts < bin_end``;
- topics starting with ``screen`` replace the carried state (latest screen wins and
  carries forward; bins before the first screen have ``state = []``); topics starting
  with ``keyboard`` or ``mouse`` are appended to the bin's ``actions``; other topics are
  ignored;
- rows ``{episode_path, bin_idx, timestamp_ns = bin_start, state, actions}`` where
  state/actions hold the events' ``mcap_message`` bytes; with ``filter_empty_actions``
  bins without actions are skipped but ``bin_idx`` keeps counting (gaps show it).

Streaming: episodes are located with Arrow compute on the ``episode_path`` column
(memory-mapped), each episode's timestamps sorted once, and its events read in blocks;
rows go to an Arrow shard in batches. Only one episode's int64 timestamps are held.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["BIN_COLUMNS", "aggregate_events_to_bins", "bin_features", "build_binned_dataset"]

BIN_COLUMNS = ("episode_path", "bin_idx", "timestamp_ns", "state", "actions")
ARROW_SCHEMA = pa.schema([("episode_path", pa.string()), ("bin_idx", pa.int32()),
                          ("timestamp_ns", pa.int64()), ("state", pa.list_(pa.binary())),
                          ("actions", pa.list_(pa.binary()))])
_BLOCK = 65536
_BATCH_ROWS = 8192


def bin_features():
    """The seed's stage-2 ``Features``."""
    from datasets import Features, Sequence, Value

    return Features({"episode_path": Value("string"), "bin_idx": Value("int32"),
                     "timestamp_ns": Value("int64"), "state": Sequence(Value("binary")),
                     "actions": Sequence(Value("binary"))})


def _kind(topic: str) -> int:
    if topic.startswith("screen"):
        return 1
    if topic.startswith("keyboard") or topic.startswith("mouse"):
        return 2
    return 0


def aggregate_events_to_bins(events: Iterable[dict] | Iterable[tuple], fps: float = 10.0,
                             filter_empty_actions: bool = False,
                             episode_path: str | None = None) -> Iterator[dict]:
    """Bins of one episode from events ``{"topic", "timestamp_ns", "mcap_message"}`` (or
    ``(timestamp_ns, topic, mcap_message)`` tuples) in any order. Pure; the dataset
    builder feeds the same state machine (``_Binner``) in blocks."""
    rows = []
    for e in events:
        if isinstance(e, dict):
            rows.append((e["timestamp_ns"], e["topic"], e["mcap_message"],
                         e.get("episode_path")))
        else:
            rows.append((e[0], e[1], e[2], None))
    if not rows:
        return
    rows.sort(key=lambda r: r[0])
    ep = episode_path if episode_path is not None else rows[0][3]
    binner = _Binner(ep, rows[0][0], fps, filter_empty_actions)
    yield from binner.feed([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    yield from binner.finish(rows[-1][0])


class _Binner:
    """The bin state machine over time-sorted events, fed in blocks."""

    def __init__(self, episode: str, first_ts: int, fps: float, filter_empty: bool):
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.episode = episode
        self.bin_ns = int(1e9 / fps)
        self.start = first_ts
        self.idx = 0                 # index of the open bin
        self.state: list[bytes] = []
        self.actions: list[bytes] = []
        self.filter_empty = filter_empty
        self.kinds: dict[str, int] = {}

    def _emit(self) -> Iterator[dict]:
        if self.actions or not self.filter_empty:
            yield {"episode_path": self.episode, "bin_idx": self.idx,
                   "timestamp_ns": self.start + self.idx * self.bin_ns,
                   "state": list(self.state), "actions": self.actions}
        self.actions = []

    def feed(self, stamps, topics, messages) -> Iterator[dict]:
        kinds, bin_ns, start = self.kinds, self.bin_ns, self.start
        for ts, topic, msg in zip(stamps, topics, messages):
            k = (ts - start) // bin_ns
            while self.idx < k:          # close the open bin (and empty ones between)
                yield from self._emit()
                self.idx += 1
                if self.filter_empty and self.idx < k:
                    self.idx = k         # skipped empty bins emit nothing
            try:
                kind = kinds[topic]
            except KeyError:
                kind = kinds[topic] = _kind(topic)
            if kind == 1:
                self.state = [msg]
            elif kind == 2:
                self.actions.append(msg)

    def finish(self, last_ts: int) -> Iterator[dict]:
        last_bin = (last_ts - self.start) // self.bin_ns
        while self.idx <= last_bin:
            yield from self._emit()
            self.idx += 1


def _episode_runs(episode_col: pa.ChunkedArray) -> dict[str, np.ndarray]:
    """Row indices of each episode (sorted episode order). Contiguous episodes, the
    normal case, are found without materialising the strings."""
    encoded = pc.dictionary_encode(episode_col).combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    names = encoded.dictionary.to_pylist()
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    groups = np.split(order, bounds)
    return dict(sorted((names[codes[g[0]]], g) for g in groups if len(g)))


def _split_rows(table: pa.Table, fps: float, filter_empty: bool) -> Iterator[pa.RecordBatch]:
    if table.num_rows == 0:
        return
    runs = _episode_runs(table.column("episode_path"))
    ts_col = table.column("timestamp_ns")
    buffer: list[dict] = []
    for episode, rows in runs.items():
        stamps = ts_col.take(pa.array(rows)).to_numpy()
        order = rows[np.argsort(stamps, kind="stable")]
        binner = _Binner(episode, int(stamps.min()), fps, filter_empty)
        for b in range(0, len(order), _BLOCK):
            block = table.take(pa.array(order[b:b + _BLOCK]))
            out = binner.feed(block.column("timestamp_ns").to_pylist(),
                              block.column("topic").to_pylist(),
                              block.column("mcap_message").to_pylist())
            for row in out:
                buffer.append(row)
                if len(buffer) >= _BATCH_ROWS:
                    yield pa.RecordBatch.from_pylist(buffer, schema=ARROW_SCHEMA)
                    buffer = []
        for row in binner.finish(int(stamps.max())):
            buffer.append(row)
            if len(buffer) >= _BATCH_ROWS:
                yield pa.RecordBatch.from_pylist(buffer, schema=ARROW_SCHEMA)
                buffer = []
    if buffer:
        yield pa.RecordBatch.from_pylist(buffer, schema=ARROW_SCHEMA)


def build_binned_dataset(input_dir, output_dir, *, fps: float = 10.0,
                         filter_empty_actions: bool = False) -> dict:
    """Stage 2: ``load_from_disk(input_dir)`` (DatasetDict or Dataset) -> binned dataset
    of the same shape at ``output_dir``. Returns ``{summary, findings}``."""
    from datasets import Dataset, DatasetDict, load_from_disk

    from robocurate.owa.events import EVENT_COLUMNS, save_dataset

    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    t0 = time.perf_counter()
    src = Path(input_dir)
    if not src.is_dir():
        raise NotADirectoryError(f"{src} is not a directory")
    try:
        loaded = load_from_disk(str(src))
    except FileNotFoundError as exc:  # not an I/O fault worth a retry: wrong directory
        raise ValueError(f"{src} is not a saved event dataset: {exc}") from None
    splits = dict(loaded) if isinstance(loaded, DatasetDict) else {None: loaded}
    for name, ds in splits.items():
        missing = [c for c in ("episode_path", "topic", "timestamp_ns", "mcap_message")
                   if c not in ds.column_names]
        if missing:
            raise ValueError(f"{src}{'/' + name if name else ''} is not an event dataset "
                             f"(missing columns {missing}; expected {list(EVENT_COLUMNS)})")
    out = Path(output_dir).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".shards", dir=out.parent))
    summary: dict = {"fps": fps, "filter empty actions": filter_empty_actions}
    try:
        shards = {}
        for name, ds in splits.items():
            if isinstance(ds, Dataset) and ds._indices is not None:  # noqa: SLF001
                ds = ds.flatten_indices()
            shard = str(scratch / f"{name or 'data'}.arrow")
            rows = 0
            with pa.OSFile(shard, "wb") as sink, pa.ipc.new_stream(sink, ARROW_SCHEMA) as w:
                for batch in _split_rows(ds.data.table, fps, filter_empty_actions):
                    w.write_batch(batch)
                    rows += batch.num_rows
            shards[name] = [shard]
            summary[f"{name or 'data'} events"] = len(ds)
            summary[f"{name or 'data'} bins"] = rows
            summary[f"{name or 'data'} episodes"] = len(set(ds.unique("episode_path")))
        if None in shards:
            save_dataset(shards[None], bin_features(), out)
        else:
            save_dataset(shards, bin_features(), out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    return {"summary": summary, "findings": []}
