"""Preflight checks for publishing an OWA dataset folder (kind ``owa``).

The folder holds a ``datasets.DatasetDict`` written with ``save_to_disk`` by one of the
OWA stages; which one is read from its columns:

=============  ==========================================  =================================
kind           written by                                  screen references in
=============  ==========================================  =================================
``event``      ``robocurate owa events`` (stage 1)         ``mcap_message`` of screen rows
``binned``     ``robocurate owa bins`` (stage 2)           ``state`` (screen mcap_messages)
``tokenized``  ``robocurate owa tokenize``                 ``images`` (screen payloads)
``packed``     ``robocurate owa pack``                     ``images`` + ``image_episode_paths``
=============  ==========================================  =================================

Four checks, each failing on its own and naming what to fix:

1. ``owa_dataset_loads``: ``datasets.load_from_disk`` opens it, and every file it needs is
   among the files the push would send (an ``--exclude`` must not cut the dataset apart);
2. ``owa_splits_present``: a DatasetDict with a non-empty ``train`` split, and a
   non-empty ``test`` split when it has one;
3. ``owa_features_documented``: every split's features are exactly the documented ones
   for its kind (``event_features()``, ``bin_features()``, the tokenizer's and the
   packer's row schemas);
4. ``owa_media_refs_resolve``: every screen event's ``media_ref`` resolves (relative to its
   recording, ``episode_path``) to an existing, readable video file. Rows are streamed in
   Arrow batches reading only the columns that hold references; each distinct video is
   probed once.

Pure library: no Prefect.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Iterator

import orjson

from robocurate.hub.preflight import CheckResult, register

__all__ = ["CHECKS", "KINDS", "SCREEN_TYPE", "detect_kind", "expected_features",
           "feature_problems", "iter_screen_refs", "load_dataset_folder"]

CHECKS = ("owa_dataset_loads", "owa_splits_present", "owa_features_documented",
          "owa_media_refs_resolve")
KINDS = ("event", "binned", "tokenized", "packed")
SCREEN_TYPE = "desktop/ScreenCaptured"
REQUIRED_SPLIT = "train"
OPTIONAL_SPLITS = ("test",)
BATCH_ROWS = 4096     # rows per Arrow batch while scanning references
MAX_LISTED = 50       # paths listed in a failing result (the reason gives the totals)
# URIs that name media elsewhere: not checkable offline, reported as such.
_REMOTE = ("http://", "https://", "rtsp://", "s3://", "gs://")


# ---------------------------------------------------------------- documented schemas
def expected_features(kind: str):
    """The documented ``datasets.Features`` of one OWA dataset kind."""
    import datasets

    if kind == "event":
        from robocurate.owa.events import event_features

        return event_features()
    if kind == "binned":
        from robocurate.owa.bins import bin_features

        return bin_features()
    if kind == "tokenized":
        from robocurate.owa.tokenizer import features

        # The tokenizer maps with an internal ``_error`` column and drops it before
        # returning; what is saved is the rest.
        feats = features()
        del feats["_error"]
        return feats
    if kind == "packed":
        # FSLDataset.to_packed_dataset's row schema (kept in step with it: the train-flow
        # test runs these checks on a real ``owa pack`` output).
        return datasets.Features({
            "input_ids": datasets.Sequence(datasets.Value("int32")),
            "attention_mask": datasets.Sequence(datasets.Value("int8")),
            "texts": datasets.Value("string"),
            "images": datasets.Sequence(datasets.Value("string")),
            "image_episode_paths": datasets.Sequence(datasets.Value("string"))})
    raise ValueError(f"unknown OWA dataset kind {kind!r}; known: {', '.join(KINDS)}")


def detect_kind(columns) -> str | None:
    """The kind whose documented columns overlap ``columns`` most (Jaccard), or None when
    no kind shares a column. Overlap rather than equality, so that a dataset with one
    column wrong is still recognised and its difference reported."""
    have = set(columns)
    best, best_score = None, 0.0
    for kind in KINDS:
        want = set(expected_features(kind))
        score = len(have & want) / len(have | want)
        if score > best_score:
            best, best_score = kind, score
    return best


def _type_name(feature) -> str:
    return repr(feature)


def feature_problems(features, kind: str) -> list[str]:
    """What differs from the documented features: missing, unexpected, wrong-typed columns."""
    want = expected_features(kind)
    problems = [f"missing column {c!r} ({_type_name(t)})" for c, t in want.items()
                if c not in features]
    problems += [f"unexpected column {c!r} ({_type_name(t)})" for c, t in features.items()
                 if c not in want]
    problems += [f"column {c!r} is {_type_name(features[c])}, documented as {_type_name(t)}"
                 for c, t in want.items() if c in features and features[c] != t]
    return problems


# ---------------------------------------------------------------- loading
class NotADataset(Exception):
    pass


def load_dataset_folder(folder: Path):
    """``load_from_disk(folder)``; NotADataset (with the reason) when it does not load."""
    import datasets

    try:
        return datasets.load_from_disk(str(folder))
    except Exception as exc:  # any failure to open is the finding, with its reason
        raise NotADataset(f"{type(exc).__name__}: {exc}") from None


def _splits(loaded) -> dict:
    """``{split: Dataset}``; a single saved Dataset appears as split ``""``."""
    import datasets

    if isinstance(loaded, datasets.DatasetDict):
        return dict(loaded)
    return {"": loaded}


def _kind_of(splits: dict) -> str | None:
    """The kind of the train split's columns (else the first split's); None for none."""
    if not splits:
        return None
    ds = splits[REQUIRED_SPLIT] if REQUIRED_SPLIT in splits else next(iter(splits.values()))
    return detect_kind(ds.features)


def _split_label(name: str) -> str:
    return f"split {name!r}" if name else "the dataset"


def _needed_files(folder: Path) -> list[str]:
    """Files (relative) that ``load_from_disk`` reads: the dict's index, each split's
    state, info and Arrow data files."""
    def one(prefix: str) -> list[str]:
        state = json.loads((folder / prefix / "state.json").read_text())
        return [f"{prefix}state.json", f"{prefix}dataset_info.json"] + [
            f"{prefix}{f['filename']}" for f in state.get("_data_files", [])]

    index = folder / "dataset_dict.json"
    if index.is_file():
        names = json.loads(index.read_text()).get("splits", [])
        return ["dataset_dict.json"] + [f for s in names for f in one(f"{s}/")]
    return one("")


def _unreadable_data_files(folder: Path) -> list[str]:
    """The Arrow data files named by the dataset's index that do not read back whole
    (memory-mapped: the record batches' framing is checked, the data is not copied)."""
    import pyarrow as pa

    try:
        needed = _needed_files(folder)
    except (OSError, ValueError, KeyError, TypeError):
        return []
    bad = []
    for rel in needed:
        if not rel.endswith(".arrow"):
            continue
        try:
            with pa.memory_map(str(folder / rel)) as source:
                pa.ipc.open_stream(source).read_all()
        except (OSError, pa.ArrowInvalid) as exc:
            bad.append(f"{rel} ({exc})")
    return bad


def _loaded_or_failure(folder: Path, name: str):
    """(loaded, None) or (None, a failed CheckResult that points at owa_dataset_loads)."""
    try:
        return load_dataset_folder(folder), None
    except NotADataset as exc:
        return None, CheckResult(name, False, f"cannot check: the folder is not a loadable "
                                              f"dataset (see owa_dataset_loads): {exc}",
                                 [str(folder)])


# ---------------------------------------------------------------- checks
@register("owa", "owa_dataset_loads")
def dataset_loads(folder: Path, files: list[Path]) -> CheckResult:
    """``load_from_disk`` opens the folder, from the files the push would send."""
    name = "owa_dataset_loads"
    try:
        loaded = load_dataset_folder(folder)
    except NotADataset as exc:
        broken = _unreadable_data_files(folder)
        if broken:
            return CheckResult(name, False, f"does not load with load_from_disk ({exc}): "
                                            f"{len(broken)} Arrow files are cut short or "
                                            f"corrupt; re-run the `robocurate owa` step that "
                                            f"wrote them", broken)
        return CheckResult(name, False, f"not a dataset saved with DatasetDict.save_to_disk "
                                        f"({exc}); publish the output folder of `robocurate "
                                        f"owa events|bins|tokenize|pack`", [str(folder)])
    try:
        needed = _needed_files(folder)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return CheckResult(name, False, f"dataset index files unreadable: {exc}", [str(folder)])
    sending = {p.relative_to(folder).as_posix() for p in files}
    left_out = [n for n in needed if n not in sending]
    if left_out:
        return CheckResult(name, False, f"{len(left_out)} files the dataset needs are not "
                                        f"among the files to push (check --include/--exclude)",
                           left_out[:MAX_LISTED])
    rows = {s or "data": len(ds) for s, ds in _splits(loaded).items()}
    return CheckResult(name, True, "loads with load_from_disk: " + ", ".join(
        f"{s} {n:,} rows" for s, n in rows.items()))


@register("owa", "owa_splits_present")
def splits_present(folder: Path, files: list[Path]) -> CheckResult:
    """A DatasetDict with a non-empty train split (and a non-empty test split if any)."""
    name = "owa_splits_present"
    loaded, failed = _loaded_or_failure(folder, name)
    if failed:
        return failed
    splits = _splits(loaded)
    if "" in splits:
        return CheckResult(name, False, "saved as a single Dataset, not a DatasetDict: save "
                                        "DatasetDict({'train': ..., 'test': ...}) so the Hub "
                                        "shows its splits", [str(folder)])
    problems = []
    if REQUIRED_SPLIT not in splits:
        problems.append(f"no {REQUIRED_SPLIT!r} split (splits: {', '.join(splits) or 'none'})")
    for s, ds in splits.items():
        if len(ds) == 0:
            problems.append(f"split {s!r} has no rows: every recording of it was skipped or "
                            f"filtered out; fix the inputs (see robocurate-report.json) or "
                            f"rebuild without an empty split")
    if problems:
        return CheckResult(name, False, "; ".join(problems), [str(folder / s) for s in splits
                                                              if len(splits[s]) == 0])
    extra = [s for s in splits if s != REQUIRED_SPLIT and s not in OPTIONAL_SPLITS]
    note = f" (also {', '.join(map(repr, extra))})" if extra else ""
    return CheckResult(name, True, ", ".join(f"{s}: {len(ds):,} rows"
                                             for s, ds in splits.items()) + note)


@register("owa", "owa_features_documented")
def features_documented(folder: Path, files: list[Path]) -> CheckResult:
    """Every split's features are exactly the documented ones of the detected kind."""
    name = "owa_features_documented"
    loaded, failed = _loaded_or_failure(folder, name)
    if failed:
        return failed
    splits = _splits(loaded)
    kind = _kind_of(splits)
    if kind is None:
        columns = sorted({c for ds in splits.values() for c in ds.column_names})
        return CheckResult(name, False, f"columns {columns} match no OWA dataset kind "
                                        f"({', '.join(KINDS)})", [str(folder)])
    bad = [f"{_split_label(s)}: {p}" for s, ds in splits.items()
           for p in feature_problems(ds.features, kind)]
    if bad:
        return CheckResult(name, False, f"features differ from the documented {kind} dataset "
                                        f"schema: rebuild with the current `robocurate owa` "
                                        f"command or cast the columns", bad[:MAX_LISTED])
    return CheckResult(name, True, f"{kind} dataset: features as documented in "
                                   f"{len(splits)} split(s)")


# ---------------------------------------------------------------- media references
def _batches(ds, columns: list[str]) -> Iterator:
    """Arrow record batches of ``columns`` only (memory-mapped: nothing else is read)."""
    if ds._indices is None:  # noqa: SLF001 (load_from_disk data: no indices mapping)
        yield from ds.data.table.select(columns).to_batches(max_chunksize=BATCH_ROWS)
    else:
        for t in ds.with_format("arrow", columns=columns).iter(batch_size=BATCH_ROWS):
            yield from t.to_batches()


def _event_payloads(batch) -> Iterator[tuple[str | None, object]]:
    """(episode_path, screen payload) of the screen rows of an event batch."""
    import pyarrow.compute as pc

    screen = batch.filter(pc.equal(batch.column("message_type"), SCREEN_TYPE))
    for ep, msg in zip(screen.column("episode_path").to_pylist(),
                       screen.column("mcap_message").to_pylist()):
        yield ep, _inner(msg)


def _inner(mcap_message: bytes | None):
    """The ``message`` payload of an OWA McapMessage JSON (None when it does not parse)."""
    try:
        return orjson.loads(mcap_message)["message"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


def iter_screen_refs(ds, kind: str) -> Iterator[tuple[str | None, object]]:
    """(episode_path, screen payload) of every screen reference of one split, streamed."""
    if kind == "event":
        for batch in _batches(ds, ["episode_path", "message_type", "mcap_message"]):
            yield from _event_payloads(batch)
    elif kind == "binned":
        for batch in _batches(ds, ["episode_path", "state"]):
            for ep, state in zip(batch.column("episode_path").to_pylist(),
                                 batch.column("state").to_pylist()):
                for msg in state or ():
                    yield ep, _inner(msg)
    elif kind == "tokenized":
        for batch in _batches(ds, ["episode_path", "images"]):
            for ep, images in zip(batch.column("episode_path").to_pylist(),
                                  batch.column("images").to_pylist()):
                for payload in images or ():
                    yield ep, payload
    elif kind == "packed":
        for batch in _batches(ds, ["images", "image_episode_paths"]):
            for images, paths in zip(batch.column("images").to_pylist(),
                                     batch.column("image_episode_paths").to_pylist()):
                images, paths = images or [], paths or []
                for i, payload in enumerate(images):
                    yield (paths[i] if i < len(paths) else None), payload
    else:
        raise ValueError(f"unknown OWA dataset kind {kind!r}")


def _probe_video(path: str) -> str | None:
    """None when ``path`` is a readable video file, else what is wrong with it."""
    if not os.path.exists(path):
        return "missing"
    if not os.path.isfile(path):
        return "not a file"
    if os.path.getsize(path) == 0:
        return "empty file"
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                return "no video stream"
    except Exception as exc:  # any PyAV/FFmpeg failure means a frame cannot be decoded
        return f"not a readable video ({type(exc).__name__}: {exc})"
    return None


@register("owa", "owa_media_refs_resolve")
def media_refs_resolve(folder: Path, files: list[Path]) -> CheckResult:
    """Every screen ``media_ref`` resolves to an existing, readable video file."""
    from robocurate.owa.media import MediaError, parse_screen

    name = "owa_media_refs_resolve"
    loaded, failed = _loaded_or_failure(folder, name)
    if failed:
        return failed
    splits = _splits(loaded)
    kind = _kind_of(splits)
    if kind is None:
        return CheckResult(name, False, "cannot find the screen references: the columns match "
                                        "no OWA dataset kind (see owa_features_documented)",
                           [str(folder)])
    refs = embedded = remote = 0
    status: dict[str, str | None] = {}          # resolved video -> problem (None: fine)
    dangling: Counter = Counter()               # (split, episode, uri, path, problem) -> n
    unusable: Counter = Counter()               # (split, episode, why) -> n
    for split, ds in splits.items():
        if any(c not in ds.column_names for c in _ref_columns(kind)):
            return CheckResult(name, False, f"{_split_label(split)} lacks the columns holding "
                                            f"screen references ({', '.join(_ref_columns(kind))}"
                                            f"); see owa_features_documented", [str(folder)])
        for episode, payload in iter_screen_refs(ds, kind):
            refs += 1
            if payload is None:
                unusable[(split, episode, "screen message does not parse")] += 1
                continue
            try:
                ref = parse_screen(payload, episode)
            except MediaError:
                unusable[(split, episode, "screen payload without a usable media_ref")] += 1
                continue
            if ref.path.startswith("data:"):
                embedded += 1
                continue
            if ref.path.startswith(_REMOTE):
                remote += 1
                continue
            if not episode and not os.path.isabs(ref.uri):
                dangling[(split, episode, ref.uri, ref.path, "no episode_path to resolve "
                          "the relative uri against")] += 1
                continue
            if ref.path not in status:
                status[ref.path] = _probe_video(ref.path)
            if status[ref.path] is not None:
                dangling[(split, episode, ref.uri, ref.path, status[ref.path])] += 1
    bad_refs = sum(dangling.values()) + sum(unusable.values())
    if bad_refs:
        lines = [f"{_split_label(s)}: {ep}: media uri {uri!r} -> {path} ({why}; {n} screen "
                 f"events)" for (s, ep, uri, path, why), n in dangling.items()]
        lines += [f"{_split_label(s)}: {ep}: {why} ({n} screen events)"
                  for (s, ep, why), n in unusable.items()]
        if len(lines) > MAX_LISTED:
            lines = lines[:MAX_LISTED] + [f"... and {len(lines) - MAX_LISTED} more"]
        videos = len({k[3] for k in dangling})
        return CheckResult(name, False, f"{bad_refs:,} of {refs:,} screen references dangle "
                                        f"({videos} video files): put each video where its "
                                        f"media_ref uri points (relative to the recording's "
                                        f"folder) or rebuild the dataset without those "
                                        f"recordings", lines)
    extra = []
    if embedded:
        extra.append(f"{embedded:,} embedded")
    if remote:
        extra.append(f"{remote:,} remote, not checked")
    return CheckResult(name, True, f"{refs:,} screen references resolve to "
                                   f"{sum(v is None for v in status.values())} readable videos"
                       + (f" ({', '.join(extra)})" if extra else ""))


def _ref_columns(kind: str) -> tuple[str, ...]:
    return {"event": ("episode_path", "message_type", "mcap_message"),
            "binned": ("episode_path", "state"),
            "tokenized": ("episode_path", "images"),
            "packed": ("images", "image_episode_paths")}[kind]
