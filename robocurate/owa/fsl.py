"""FSLDataset: tokenised events packed into fixed-length sequences (few-shot-learning
style training), with random access and lazy screen-frame loading.

Packing (computed once by ``prepare()``, vectorised with ``searchsorted`` on the token
cumulative sum): sequences are consecutive runs of *whole* events whose token count fits
``max_sequence_length``; a sequence starts where the previous one ended, so no event is
repeated or lost (the original's ``idx*L`` grid overlapped and skipped events). An event
longer than the sequence alone is left out and counted (``skipped_too_long``). Sequences
run across episodes, which are separated by the ``<EPISODE_END>``/``<EPISODE_START>``
tokens already in the token ids (July 2025 behaviour); ``episode_aligned=True`` starts a
new sequence at each episode instead (HEAD behaviour).

Each item: ``texts`` (the joined event texts), ``input_ids`` and ``attention_mask``
(LongTensors of ``max_sequence_length``; right padding with ``pad_token_id``; the mask is
by position, so a pad id that is also a real token is not masked), ``images`` (PIL
images in ``<image>`` order, or the screen payloads when ``load_images=False``; pixel
values when an image processor is given). Every ``log_every`` items a throughput line is
logged, as the original's ``FSLStatLogger``:
``FSL[30] | Total: 3.2s/s, 3,274t/s, 44.8i/s, 49.5Mb/s | EMA: ...`` (samples, tokens of
the padded sequences, images and image volume w*h*3 per second, since the start and as a
moving average with alpha 0.9).
"""

from __future__ import annotations

import time

import numpy as np

from robocurate.log import get_logger
from robocurate.owa.media import FrameLoader


def _format_rate(value: float) -> str:
    if value >= 1e9:
        return f"{value / 1e9:.1f}Gb/s"
    if value >= 1e6:
        return f"{value / 1e6:.1f}Mb/s"
    if value >= 1e3:
        return f"{value / 1e3:.1f}Kb/s"
    return f"{value:.0f}b/s"


class FSLStatLogger:
    """Every ``log_every`` samples: totals since the start and an EMA of recent rates."""

    def __init__(self, log_every: int = 10, decay_alpha: float = 0.9, clock=time.perf_counter):
        self.log_every, self.alpha, self.clock = log_every, decay_alpha, clock
        self.count = self.tokens = self.images = self.image_bits = 0
        self._recent = [0, 0, 0, 0]
        self.start = self.last = clock()
        self.ema: list[float] | None = None
        self.last_line: str | None = None

    def update(self, samples: int, tokens: int, images: int, image_bits: int) -> str | None:
        self.count += samples
        self.tokens += tokens
        self.images += images
        self.image_bits += image_bits
        for i, v in enumerate((samples, tokens, images, image_bits)):
            self._recent[i] += v
        if self.log_every <= 0 or self.count % self.log_every:
            return None
        now = self.clock()
        total = now - self.start + 1e-6
        since = now - self.last
        if since > 0:
            recent = [v / since for v in self._recent]
            self.ema = recent if self.ema is None else [
                self.alpha * e + (1 - self.alpha) * r for e, r in zip(self.ema, recent)]
        line = (f"FSL[{self.count}] | Total: {self.count / total:.1f}s/s, "
                f"{self.tokens / total:,.0f}t/s, {self.images / total:.1f}i/s, "
                f"{_format_rate(self.image_bits / total)}")
        if self.ema is not None:
            s, t, i, b = self.ema
            line += f" | EMA: {s:.1f}s/s, {t:,.0f}t/s, {i:.1f}i/s, {_format_rate(b)}"
        get_logger(pipeline="owa").info(line)
        self.last_line = line
        self._recent = [0, 0, 0, 0]
        self.last = now
        return line


def pack_boundaries(counts: np.ndarray, max_len: int,
                    episode_starts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Greedy packing of whole events: (starts, ends, skipped) with events [starts[k],
    ends[k]) in sequence k. ``episode_starts`` (sorted event indices) cut sequences."""
    n = len(counts)
    cum = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=cum[1:])
    starts, ends, skipped, s = [], [], 0, 0
    ep = episode_starts if episode_starts is not None and len(episode_starts) else None
    while s < n:
        e = int(np.searchsorted(cum, cum[s] + max_len, side="right")) - 1
        if ep is not None:
            k = int(np.searchsorted(ep, s, side="right"))
            if k < len(ep):
                e = min(e, int(ep[k]))
        if e <= s:  # this single event does not fit in a sequence
            skipped += 1
            s += 1
            continue
        starts.append(s)
        ends.append(e)
        s = e
    return np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64), skipped


class FSLDataset:
    def __init__(self, dataset, image_processor=None, *, pad_token_id: int = 0,
                 max_sequence_length: int = 8192, load_images: bool = True,
                 episode_aligned: bool = False, placeholder_images: bool = False,
                 frame_loader: FrameLoader | None = None, log_every: int = 10):
        if max_sequence_length <= 0:
            raise ValueError("max_sequence_length must be positive")
        missing = {"token_ids", "total_token_count", "images", "episode_path"} - set(dataset.column_names)
        if missing:
            raise ValueError(f"not a tokenized event dataset: missing columns {sorted(missing)} "
                             "(run EpisodeTokenizer.tokenize_event_dataset first)")
        self.dataset = dataset
        self.image_processor = image_processor
        self.pad_token_id = int(pad_token_id if pad_token_id is not None else 0)
        self.max_sequence_length = int(max_sequence_length)
        self.load_images = load_images
        self.episode_aligned = episode_aligned
        self.loader = frame_loader or FrameLoader(placeholder=placeholder_images)
        self.stat_logger = FSLStatLogger(log_every=log_every)
        self._starts = None

    def prepare(self) -> "FSLDataset":
        from robocurate.owa.tokenizer import arrow_column

        counts = arrow_column(self.dataset, "total_token_count").to_numpy(zero_copy_only=False)
        episode_starts = None
        if self.episode_aligned and len(counts):
            import pyarrow.compute as pc

            paths = arrow_column(self.dataset, "episode_path")
            codes = pc.dictionary_encode(paths).indices.to_numpy(zero_copy_only=False)
            episode_starts = np.flatnonzero(np.diff(codes) != 0) + 1
        self._starts, self._ends, self.skipped_too_long = pack_boundaries(
            counts.astype(np.int64), self.max_sequence_length, episode_starts)
        self._arrow = self.dataset.with_format("arrow")
        if self.skipped_too_long:
            get_logger(pipeline="owa").warning("events longer than max_sequence_length left out",
                                               count=self.skipped_too_long,
                                               max_sequence_length=self.max_sequence_length)
        return self

    def _check(self):
        if self._starts is None:
            raise RuntimeError("Dataset must be prepared before use. Call prepare() first.")

    def __len__(self) -> int:
        self._check()
        return len(self._starts)

    def sequence_rows(self, idx: int) -> tuple[int, int]:
        """Event rows [start, end) of sequence ``idx``."""
        self._check()
        n = len(self._starts)
        if idx < 0:
            idx += n
        if not 0 <= idx < n:
            raise IndexError(f"sequence {idx} out of range (0..{n - 1})")
        return int(self._starts[idx]), int(self._ends[idx])

    def raw_item(self, idx: int) -> dict:
        """Token ids (unpadded), texts and screen references of one sequence: no decoding."""
        s, e = self.sequence_rows(idx)
        t = self._arrow[s:e]
        ids = t.column("token_ids").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        images, image_paths = [], []
        for path, imgs in zip(t.column("episode_path").to_pylist(), t.column("images").to_pylist()):
            images += imgs
            image_paths += [path] * len(imgs)
        return {"texts": "".join(t.column("text").to_pylist()), "token_ids": ids,
                "images": images, "image_episode_paths": image_paths}

    def __getitem__(self, idx: int) -> dict:
        raw = self.raw_item(idx)
        item = pad_item(raw["token_ids"], self.max_sequence_length, self.pad_token_id)
        item["texts"] = raw["texts"]
        images, image_bits = load_item_images(raw["images"], raw["image_episode_paths"], self.loader,
                                              self.load_images, self.image_processor)
        item["images"] = images
        self.stat_logger.update(1, self.max_sequence_length, len(raw["images"]), image_bits)
        return item

    def take(self, n: int):
        for i in range(min(n, len(self))):
            yield self[i]

    def __iter__(self):
        return self.take(len(self))

    def to_packed_dataset(self):
        """Every sequence as a row (HEAD's precomputed FSL layout): ``input_ids``,
        ``attention_mask``, ``texts``, ``images`` (screen payloads) and
        ``image_episode_paths`` (the MCAP each image's ``media_ref`` is relative to).
        Load with ``load_from_disk`` and ``set_transform(create_packed_transform())``."""
        import datasets

        feats = datasets.Features({
            "input_ids": datasets.Sequence(datasets.Value("int32")),
            "attention_mask": datasets.Sequence(datasets.Value("int8")),
            "texts": datasets.Value("string"),
            "images": datasets.Sequence(datasets.Value("string")),
            "image_episode_paths": datasets.Sequence(datasets.Value("string"))})
        self._check()
        return datasets.Dataset.from_generator(_packed_rows, features=feats,
                                               gen_kwargs={"fsl": self}, cache_dir=None)


def _packed_rows(fsl: FSLDataset):
    L, pad = fsl.max_sequence_length, fsl.pad_token_id
    for k in range(len(fsl)):
        raw = fsl.raw_item(k)
        ids = np.full(L, pad, dtype=np.int32)
        n = len(raw["token_ids"])
        ids[:n] = raw["token_ids"]
        mask = np.zeros(L, dtype=np.int8)
        mask[:n] = 1
        yield {"input_ids": ids, "attention_mask": mask, "texts": raw["texts"],
               "images": raw["images"], "image_episode_paths": raw["image_episode_paths"]}


def pad_item(token_ids, max_len: int, pad_token_id: int) -> dict:
    n = len(token_ids)
    ids = np.full(max_len, pad_token_id, dtype=np.int64)
    ids[:n] = token_ids
    mask = np.zeros(max_len, dtype=np.int64)
    mask[:n] = 1
    try:
        import torch

        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    except ImportError:  # torch is optional for the library
        return {"input_ids": ids, "attention_mask": mask}


def load_item_images(images: list[str], episode_paths: list[str], loader: FrameLoader,
                     load: bool, image_processor=None) -> tuple[list, int]:
    """(images, image volume w*h*3): PIL images, or the payloads when ``load`` is False."""
    if not load:
        return list(images), 0
    pil = [loader.load_pil(img, path) for img, path in zip(images, episode_paths)]
    bits = sum(im.width * im.height * 3 for im in pil)
    if image_processor is None:
        return pil, bits
    import torch

    values = []
    for im in pil:
        out = image_processor(im, return_tensors="pt")["pixel_values"]
        while out.dim() > 3:
            out = out.squeeze(0)
        values.append(out)
    return (torch.stack(values) if values else torch.empty(0, 3, 224, 224)), bits


def create_packed_transform(load_images: bool = True, placeholder_images: bool = False,
                            image_processor=None, frame_loader: FrameLoader | None = None):
    """``set_transform`` for a packed dataset saved by ``owa pack``: tensors + frames."""
    loader = frame_loader or FrameLoader(placeholder=placeholder_images)

    def transform(batch: dict) -> dict:
        import torch

        out = {"input_ids": [torch.as_tensor(x, dtype=torch.long) for x in batch["input_ids"]],
               "attention_mask": [torch.as_tensor(x, dtype=torch.long) for x in batch["attention_mask"]],
               "texts": batch["texts"], "images": []}
        for imgs, paths in zip(batch["images"], batch["image_episode_paths"]):
            out["images"].append(load_item_images(imgs, paths, loader, load_images, image_processor)[0])
        return out

    return transform
