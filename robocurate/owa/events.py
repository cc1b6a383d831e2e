"""Stage 1: OWAMcap recordings -> event dataset (a ``datasets.DatasetDict`` on disk).

Behaviour follows the July-2025 ``01_raw_events_to_event_dataset.py`` (reference
``react-tactile-and-owa.md`` 2.2), with its flaws fixed where the issue asks:

- files: ``sorted(dir.glob("*.mcap"))`` of the train (and test) directory;
- split: an explicit test directory wins (a file in both is an error); otherwise a
  *seeded* permutation (``numpy.random.default_rng(seed)``), ``test_count =
  max(1, int(n * test_percent))`` first files of it are test (the original shuffled
  unseeded);
- topic filter first (default ``screen, keyboard, mouse``), then per-topic drop-only
  rate limiting (default ``mouse=60, screen=20``): ``min_interval_ns = int((1/hz)*1e9)``,
  ``last_kept`` starts at 0, keep iff ``ts - last_kept >= min_interval_ns``. Every
  message of the file is considered, its last one included (the original iterated a
  half-open ``[start, end)`` and so always lost the final message);
- rows in log-time order per episode, episodes in sorted path order (the original used
  completion order), with the row schema ``FEATURES``; ``mcap_message`` is the JSON of
  OWA's ``McapMessage`` (``{"topic","timestamp","message","message_type"}``, the payload
  as a JSON string), byte for byte what ``McapMessage.model_dump_json().encode()`` gives;
- legacy schema generations are normalised on the way in (``robocurate.owa.schemas``).

Bad files: a corrupt MCAP, an unknown schema or an unparseable payload on a kept topic,
or no screen messages (when ``screen`` is kept) drop the whole file with an error
finding; a corrupt file never contributes a row. Each file is read by one worker that
streams its rows into an Arrow shard (one record batch per MCAP chunk), so memory does
not grow with the recording; the shards are then joined and saved, and the output
directory is replaced atomically.

This module's worker side imports only pyarrow/orjson; ``datasets`` is imported where
the dataset is assembled.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import orjson
import pyarrow as pa

from robocurate.owa.mcapread import McapCorrupt, OwaMcapReader

__all__ = [
    "DEFAULT_RATES",
    "DEFAULT_TOPICS",
    "EVENT_COLUMNS",
    "EventSettings",
    "build_event_dataset",
    "event_features",
    "extract_episode",
    "list_mcaps",
    "mcap_message_json",
    "parse_rates",
    "rate_limit",
    "save_dataset",
    "split_files",
]

DEFAULT_RATES = {"mouse": 60.0, "screen": 20.0}
DEFAULT_TOPICS = ("screen", "keyboard", "mouse")
EVENT_COLUMNS = ("episode_path", "topic", "timestamp_ns", "message_type", "mcap_message")
ARROW_SCHEMA = pa.schema([("episode_path", pa.string()), ("topic", pa.string()),
                          ("timestamp_ns", pa.int64()), ("message_type", pa.string()),
                          ("mcap_message", pa.binary())])


def event_features():
    """The seed's stage-1 ``Features``."""
    from datasets import Features, Value

    return Features({"episode_path": Value("string"), "topic": Value("string"),
                     "timestamp_ns": Value("int64"), "message_type": Value("string"),
                     "mcap_message": Value("binary")})


@dataclass(frozen=True)
class EventSettings:
    keep_topics: tuple[str, ...] = DEFAULT_TOPICS
    rates: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATES))

    def __post_init__(self):
        for topic, hz in self.rates.items():
            if not hz > 0:
                raise ValueError(f"rate for topic {topic!r} must be positive, got {hz}")
        if not self.keep_topics:
            raise ValueError("no topics to keep")

    def min_intervals(self) -> dict[str, int]:
        return {t: int((1.0 / hz) * 1e9) for t, hz in self.rates.items()}


def parse_rates(items: Iterable[str]) -> dict[str, float]:
    """``["screen=20", "mouse=60"]`` -> ``{"screen": 20.0, "mouse": 60.0}``."""
    rates = {}
    for item in items:
        topic, sep, hz = item.partition("=")
        if not sep or not topic:
            raise ValueError(f"--rate expects TOPIC=HZ, got {item!r}")
        try:
            rates[topic] = float(hz)
        except ValueError:
            raise ValueError(f"--rate {item!r}: {hz!r} is not a number") from None
        if not rates[topic] > 0:
            raise ValueError(f"--rate {item!r}: the rate must be positive")
    return rates


def rate_limit(timestamps: Iterable[int], hz: float) -> list[bool]:
    """The documented drop rule for one topic's timestamps (pure; tests and docs)."""
    interval = int((1.0 / hz) * 1e9)
    last, keep = 0, []
    for ts in timestamps:
        ok = ts - last >= interval
        if ok:
            last = ts
        keep.append(ok)
    return keep


def mcap_message_json(topic: str, timestamp: int, message: bytes, message_type: str) -> bytes:
    """``McapMessage(...).model_dump_json().encode()``: keys in declaration order, the
    raw JSON payload as a (UTF-8) JSON string."""
    return (b'{"topic":%s,"timestamp":%d,"message":%s,"message_type":%s}'
            % (orjson.dumps(topic), timestamp, orjson.dumps(message.decode("utf-8")),
               orjson.dumps(message_type)))


# ---------------------------------------------------------------- files and split
def list_mcaps(directory: str | os.PathLike) -> list[Path]:
    d = Path(directory)
    if not d.is_dir():
        raise NotADirectoryError(f"{d} is not a directory")
    return sorted(p for p in d.glob("*.mcap") if p.is_file())


def _identity(p: Path):
    st = p.stat()
    return (st.st_dev, st.st_ino)


def split_files(train_dir, test_dir=None, *, test_percent: float = 0.2,
                seed: int = 0) -> dict[str, list[Path]]:
    """{"train": [...], "test": [...]} (sorted). Raises FileNotFoundError when there is
    nothing to read, ValueError on a bad percentage or a file in both directories."""
    files = list_mcaps(train_dir)
    if not files:
        raise FileNotFoundError(f"no *.mcap files in {Path(train_dir)}")
    if test_dir is not None:
        test = list_mcaps(test_dir)
        if not test:
            raise FileNotFoundError(f"no *.mcap files in the test directory {Path(test_dir)}")
        train_ids = {_identity(p): p for p in files}
        both = [str(p) for p in test if _identity(p) in train_ids]
        if both:
            raise ValueError(f"{len(both)} file(s) are in both the train and the test "
                             f"directory: {', '.join(both[:5])}")
        return {"train": files, "test": test}
    if not 0.0 < test_percent < 1.0:
        raise ValueError(f"test percent must be in (0, 1), got {test_percent}")
    if len(files) < 2:
        raise ValueError(f"only one recording in {Path(train_dir)}: cannot split it into "
                         f"train and test; give a --test-dir")
    order = np.random.default_rng(seed).permutation(len(files))
    test_count = max(1, int(len(files) * test_percent))
    test = sorted(files[i] for i in order[:test_count])
    train = sorted(files[i] for i in order[test_count:])
    return {"train": train, "test": test}


# ---------------------------------------------------------------- one file
class _Plan:
    """What to do with one channel's messages."""

    __slots__ = ("topic", "interval", "last", "prefix", "suffix", "rewrite", "message_type")

    def __init__(self, topic, interval, last, message_type, rewrite):
        self.topic = topic
        self.interval = interval      # None: not rate limited
        self.last = last              # shared per topic: [last kept ts]
        self.prefix = b'{"topic":%s,"timestamp":' % orjson.dumps(topic)
        self.suffix = b',"message_type":%s}' % orjson.dumps(message_type)
        self.rewrite = rewrite
        self.message_type = message_type


def _episode_rows(reader: OwaMcapReader, settings: EventSettings, episode: str,
                  findings: list[dict], counts: dict[str, int]):
    """Yield one Arrow record batch per chunk of kept rows."""
    keep = set(settings.keep_topics)
    intervals = settings.min_intervals()
    last_kept: dict[str, list[int]] = {}
    plans: dict[int, _Plan | None] = {}
    loads, dumps = orjson.loads, orjson.dumps
    json_error = orjson.JSONDecodeError

    def plan_for(ch: int) -> _Plan | None:
        info = reader.channels[ch]
        if info.topic not in keep:
            return None
        if info.plan is None:
            raise McapCorrupt("unknown_schema", f"topic {info.topic!r} (kept): {info.error}")
        return _Plan(info.topic, intervals.get(info.topic),
                     last_kept.setdefault(info.topic, [0]), info.message_type,
                     info.plan.rewrite)

    for chunk in reader.chunks():
        buf = chunk.buf
        mv = memoryview(buf)
        topics, stamps, types, messages = [], [], [], []
        for t, ch, s, e in zip(chunk.log_times, chunk.channel_ids, chunk.starts, chunk.ends):
            try:
                p = plans[ch]
            except KeyError:
                p = plans[ch] = plan_for(ch)
                if p is None:
                    info = reader.channels[ch]
                    if info.plan is None:
                        findings.append({"rule": "unknown_schema", "severity": "warning",
                                         "item": info.topic, "message": f"topic not kept, "
                                         f"ignored: {info.error}"})
            if p is None:
                continue
            try:
                if p.rewrite is None:
                    data = mv[s:e]
                    if type(loads(data)) is not dict:
                        raise ValueError("payload is not a JSON object")
                else:
                    data = p.rewrite(buf[s:e])
            except (json_error, ValueError, TypeError) as exc:
                raise McapCorrupt("bad_json", f"topic {p.topic!r}, message at log time {t}: "
                                              f"payload does not parse: {exc}") from None
            if p.interval is not None:
                last = p.last
                if t - last[0] < p.interval:
                    continue
                last[0] = t
            topics.append(p.topic)
            stamps.append(t)
            types.append(p.message_type)
            messages.append(b"%s%d,\"message\":%s%s"
                            % (p.prefix, t, dumps(str(data, "utf-8")), p.suffix))
        if not stamps:
            continue
        for tp in topics:
            counts[tp] = counts.get(tp, 0) + 1
        n = len(stamps)
        yield pa.record_batch([
            pa.array([episode] * n, pa.string()),
            pa.array(topics, pa.string()),
            pa.array(stamps, pa.int64()),
            pa.array(types, pa.string()),
            pa.array(messages, pa.binary()),
        ], schema=ARROW_SCHEMA)


def extract_episode(path: str, shard: str, keep_topics: tuple[str, ...] = DEFAULT_TOPICS,
                    rates: dict[str, float] | None = None, episode_path: str | None = None,
                    ) -> dict:
    """Read one MCAP into an Arrow stream file ``shard`` (written to a temp name and
    renamed). Returns ``{path, ok, rule, rows, messages, topics, shard, seconds,
    findings}``; on any data problem no shard is left behind and ``ok`` is False."""
    t0 = time.perf_counter()
    settings = EventSettings(tuple(keep_topics),
                             dict(DEFAULT_RATES if rates is None else rates))
    episode = episode_path or str(Path(path).resolve())
    findings: list[dict] = []
    counts: dict[str, int] = {}
    result = {"path": str(path), "episode_path": episode, "ok": False, "rule": None,
              "rows": 0, "messages": 0, "topics": counts, "shard": None}
    tmp = f"{shard}.partial"
    try:
        with OwaMcapReader(path) as reader, pa.OSFile(tmp, "wb") as sink:
            with pa.ipc.new_stream(sink, ARROW_SCHEMA) as writer:
                for batch in _episode_rows(reader, settings, episode, findings, counts):
                    writer.write_batch(batch)
                    result["rows"] += batch.num_rows
            result["messages"] = reader.message_count
            screen_seen = any(c.topic == "screen" for c in reader.channels.values())
            if "screen" in settings.keep_topics and not counts.get("screen"):
                why = ("no screen topic" if not screen_seen
                       else "the screen topic has no messages")
                raise McapCorrupt("no_screen_topic", f"{why}: the recording has no frames "
                                                     f"to train on")
        os.replace(tmp, shard)
        result.update(ok=True, shard=str(shard))
    except McapCorrupt as exc:
        findings.append({"rule": exc.rule, "severity": "error", "item": None,
                         "message": f"{exc.message}; file skipped"})
        result["rule"] = exc.rule
    except (struct.error, UnicodeDecodeError, EOFError, ValueError) as exc:
        findings.append({"rule": "corrupt_record", "severity": "error", "item": None,
                         "message": f"{type(exc).__name__}: {exc}; file skipped"})
        result["rule"] = "corrupt_record"
    except OSError as exc:
        findings.append({"rule": "unreadable_file", "severity": "error", "item": None,
                         "message": f"{type(exc).__name__}: {exc}; file skipped"})
        result["rule"] = "unreadable_file"
    finally:
        if not result["ok"]:
            Path(tmp).unlink(missing_ok=True)
            result["rows"] = 0
    result["findings"] = [{"path": str(path), **f} for f in findings]
    result["seconds"] = round(time.perf_counter() - t0, 4)
    return result


# ---------------------------------------------------------------- assembling
def save_dataset(shards: dict[str, list[str]] | list[str], features, output_dir) -> None:
    """Join Arrow stream shards into a Dataset per split and ``save_to_disk`` them at
    ``output_dir``, replacing what was there only once the new copy is complete. A dict
    gives a DatasetDict (one entry per split), a list a single Dataset."""
    from datasets import Dataset, DatasetDict, concatenate_datasets
    from datasets.utils import (are_progress_bars_disabled, disable_progress_bars,
                                enable_progress_bars)

    out = Path(output_dir).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".saving", dir=out.parent))
    try:
        def split_dataset(paths: list[str]):
            parts = [Dataset.from_file(p) for p in paths]
            parts = [p for p in parts if len(p)]
            if not parts:
                return Dataset.from_dict({k: [] for k in features}, features=features)
            ds = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
            return ds.cast(features) if ds.features != features else ds

        if isinstance(shards, dict):
            result = DatasetDict({k: split_dataset(v) for k, v in shards.items()})
        else:
            result = split_dataset(shards)
        target = staging / "dataset"
        quiet = not are_progress_bars_disabled()
        if quiet:  # library code: no progress bars on the caller's stderr
            disable_progress_bars()
        # An empty split saved with datasets' default sharding gets 0 shards, and
        # load_from_disk then fails; one (empty) shard keeps it loadable.
        if isinstance(result, DatasetDict):
            num_shards = {k: 1 for k, v in result.items() if len(v) == 0} or None
        else:
            num_shards = 1 if len(result) == 0 else None
        try:
            result.save_to_disk(str(target), num_shards=num_shards)
        finally:
            if quiet:
                enable_progress_bars()
        del result
        old = None
        if out.exists():
            old = staging / "previous"
            os.replace(out, old)
        os.replace(target, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _run_files(jobs: list[tuple], workers: int) -> list[dict]:
    if workers <= 1 or len(jobs) <= 1:
        return [extract_episode(*job) for job in jobs]
    import multiprocessing

    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(extract_episode, *job) for job in jobs]
        return [f.result() for f in futures]


def build_event_dataset(train_dir, output_dir, *, test_dir=None, test_percent: float = 0.2,
                        seed: int = 0, rates: dict[str, float] | None = None,
                        keep_topics: Iterable[str] | None = None, workers: int = 1) -> dict:
    """Stage 1 without orchestration: returns ``{splits, files, summary, findings}``."""
    t0 = time.perf_counter()
    settings = EventSettings(tuple(keep_topics or DEFAULT_TOPICS),
                             dict(DEFAULT_RATES if rates is None else rates))
    splits = split_files(train_dir, test_dir, test_percent=test_percent, seed=seed)
    out = Path(output_dir).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".shards", dir=out.parent))
    try:
        jobs, where = [], []
        for split, files in splits.items():
            for i, p in enumerate(files):
                jobs.append((str(p), str(scratch / f"{split}-{i:06d}.arrow"),
                             settings.keep_topics, settings.rates))
                where.append(split)
        results = _run_files(jobs, workers)
        shards = {s: [] for s in splits}
        for split, r in zip(where, results):
            r["split"] = split
            if r["ok"]:
                shards[split].append(r["shard"])
        save_dataset(shards, event_features(), out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return summarise(results, splits, time.perf_counter() - t0)


def summarise(results: list[dict], splits: dict[str, list], seconds: float) -> dict:
    findings = [f for r in results for f in r["findings"]]
    messages = sum(r["messages"] for r in results)
    summary = {"files": len(results),
               "files skipped": sum(not r["ok"] for r in results),
               "messages read": messages,
               "seconds": round(seconds, 3),
               "messages/s": round(messages / seconds) if seconds > 0 else None}
    for split in splits:
        summary[f"{split} files"] = sum(r["ok"] for r in results if r.get("split") == split)
        summary[f"{split} rows"] = sum(r["rows"] for r in results if r.get("split") == split)
    return {"summary": summary, "files": results, "findings": findings,
            "splits": {k: [str(p) for p in v] for k, v in splits.items()}}
