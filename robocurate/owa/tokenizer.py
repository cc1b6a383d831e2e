"""EpisodeTokenizer: event dataset rows -> token ids for packing (OWA July 2025 semantics).

Per event: encode with the chosen encoder, expand the image placeholder ``<image>`` to
``image_token_length`` (64) copies, tokenise without special tokens. The first event of
an episode is prefixed with ``<EPISODE_START>``, the last one suffixed with
``<EPISODE_END>`` (the original forgets the END of the very last episode of the dataset;
here every episode is closed).

Speed: the hierarchical format is made only of vocabulary tokens, each added to the
tokenizer as one token, so its ids come from a cached table instead of a tokenizer call
per event. ``prepare_model`` checks that every vocabulary string is exactly one token
(and that the table reproduces ``tokenizer.encode`` on probe events); otherwise, and for
the JSON encoder's free text, a batched tokenizer call is used.
"""

from __future__ import annotations

from dataclasses import dataclass

from robocurate.findings import Finding
from robocurate.log import get_logger
from robocurate.owa.encoders import EncodingError, McapMessage, create_encoder

OUTPUT_COLUMNS = ("episode_path", "topic", "timestamp_ns", "text", "token_ids", "images",
                  "total_token_count")


@dataclass
class EpisodeTokenizerConfig:
    encoder_type: str = "hierarchical"
    image_token_length: int = 64
    image_token: str = "<image>"
    image_token_prefix: str = "<fake_token_around_image><global-img>"
    image_token_suffix: str = "<fake_token_around_image>"
    episode_start_token: str = "<EPISODE_START>"
    episode_end_token: str = "<EPISODE_END>"


_PROBES = [
    McapMessage("keyboard", 1_234_567_890, b'{"event_type":"press","vk":65}', "desktop/KeyboardEvent"),
    McapMessage("mouse", 5_000_000_001, b'{"event_type":"click","x":100,"y":2000,"button":"right",'
                b'"pressed":false}', "desktop/MouseEvent"),
    McapMessage("mouse", 7, b'{"event_type":"scroll","x":5,"y":6,"dx":0,"dy":-1}', "desktop/MouseEvent"),
    McapMessage("screen", 3_000_000_000, b'{"utc_ns":1,"shape":[8,8],"media_ref":{"uri":"a.mkv",'
                b'"pts_ns":0}}', "desktop/ScreenCaptured"),
]


def arrow_column(ds, name: str):
    """One column as a pyarrow array, honouring an indices mapping (select/shuffle)."""
    col = ds.with_format("arrow", columns=[name])[name]
    return col.combine_chunks() if hasattr(col, "combine_chunks") else col


def features():
    from datasets import Features, Sequence, Value

    return Features({"episode_path": Value("string"), "topic": Value("string"),
                     "timestamp_ns": Value("int64"), "text": Value("string"),
                     "token_ids": Sequence(Value("int32")), "images": Sequence(Value("string")),
                     "total_token_count": Value("int64"), "_error": Value("string")})


class EpisodeTokenizer:
    def __init__(self, config: EpisodeTokenizerConfig | None = None, **kwargs):
        base = config or EpisodeTokenizerConfig()
        self.config = EpisodeTokenizerConfig(**(base.__dict__ | kwargs))
        c = self.config
        self.encoder = create_encoder(c.encoder_type, image_token=c.image_token,
                                      image_token_prefix=c.image_token_prefix,
                                      image_token_suffix=c.image_token_suffix)
        self.tokenizer = None
        self.is_prepared = False
        self._ids: dict[str, int] | None = None
        self.findings: list[Finding] = []

    def get_vocab(self) -> set[str]:
        c = self.config
        return self.encoder.get_vocab() | {c.image_token, c.episode_start_token, c.episode_end_token}

    # -- preparation ----------------------------------------------------------------
    def prepare_model(self, *, tokenizer, model=None):
        """Add the vocabulary (sorted, as the original) and resize ``model``'s embeddings."""
        if isinstance(tokenizer, str):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        tokenizer.add_tokens(sorted(self.get_vocab()))
        if model is not None:
            model.resize_token_embeddings(len(tokenizer))
        self.tokenizer = tokenizer
        self.is_prepared = True
        self._ids = self._build_id_table()
        return tokenizer

    def _build_id_table(self) -> dict[str, int] | None:
        table = {}
        for tok in self.get_vocab():
            ids = self.tokenizer.encode(tok, add_special_tokens=False)
            if len(ids) != 1:
                get_logger(pipeline="owa").warning("vocabulary string is not one token; "
                                                   "using the tokenizer per event", token=tok, ids=ids)
                return None
            table[tok] = ids[0]
        self._ids = table
        for probe in _PROBES:  # the table must agree with the tokenizer itself
            text, images = self.encoder.encode(probe)
            fast = self._fast_ids(probe)
            if fast is not None and fast != self.tokenizer.encode(self._expand(text),
                                                                  add_special_tokens=False):
                get_logger(pipeline="owa").warning("token table disagrees with the tokenizer; "
                                                   "using the tokenizer per event")
                return None
        return table

    def _check(self):
        if not self.is_prepared:
            raise RuntimeError("EpisodeTokenizer must be prepared by `prepare_model` before tokenizing")

    # -- one event ------------------------------------------------------------------
    def _expand(self, text: str) -> str:
        c = self.config
        return text.replace(c.image_token, c.image_token * c.image_token_length)

    def _fast_ids(self, event) -> list[int] | None:
        """Ids from the cached table, or None when the text needs the real tokenizer."""
        if self._ids is None:
            return None
        tokens, _, _ = self.encoder.encode_tokens(event)
        if tokens is None:
            return None
        table, image, n = self._ids, self.config.image_token, self.config.image_token_length
        out: list[int] = []
        try:
            for t in tokens:
                if t == image:
                    out.extend([table[t]] * n)
                else:
                    out.append(table[t])
        except KeyError:  # e.g. a vk above 255 or an x1 button: not in the vocabulary
            return None
        return out

    def tokenize(self, event) -> dict:
        """``{text, token_ids, images, total_token_count}`` of one event."""
        self._check()
        tokens, text, images = self.encoder.encode_tokens(event)
        ids = self._fast_ids(event) if tokens is not None else None
        text = self._expand(text)
        if ids is None:
            ids = self.tokenizer.encode(text, add_special_tokens=False)
        return {"text": text, "token_ids": ids, "images": images, "total_token_count": len(ids)}

    # -- datasets -------------------------------------------------------------------
    def tokenize_event_dataset(self, event_dataset, map_kwargs: dict | None = None):
        """Tokenise a stage 1 event dataset (rows: episode_path, topic, timestamp_ns,
        message_type, mcap_message). Events of topics the encoder cannot represent are
        left out first; an event that fails to encode becomes a finding (``self.findings``)
        and is dropped, its episode boundary tokens kept. Returns a ``datasets.Dataset``
        with columns ``OUTPUT_COLUMNS``."""
        self._check()
        import pyarrow.compute as pc

        ds = event_dataset
        topics = getattr(self.encoder, "topics", None)
        if topics is not None:
            import numpy as np
            import pyarrow as pa

            mask = pc.is_in(arrow_column(ds, "topic"), value_set=pa.array(topics))
            if not pc.all(mask).as_py():
                ds = ds.select(np.flatnonzero(mask.to_numpy(zero_copy_only=False)))
        if len(ds) == 0:
            return ds.map(lambda b: b, batched=True, remove_columns=ds.column_names,
                          features=features()).remove_columns(["_error"])
        paths = ds.select_columns(["episode_path"])
        kwargs = {"batch_size": 1000, **(map_kwargs or {})}
        out = ds.map(self._process_batch, batched=True, with_indices=True,
                     fn_kwargs={"paths": paths, "n": len(ds)}, remove_columns=ds.column_names,
                     features=features(), desc="Tokenizing event dataset", **kwargs)
        errors = arrow_column(out, "_error")
        if pc.any(pc.not_equal(errors, "")).as_py():
            bad = [i for i, e in enumerate(errors.to_pylist()) if e]
            for i in bad:
                row = out[i]
                self.findings.append(Finding(row["episode_path"], "owa-encode", row["_error"],
                                             item=f"timestamp_ns={row['timestamp_ns']}"))
            empty = set(i for i in bad if not out[i]["token_ids"])
            if empty:
                out = out.select([i for i in range(len(out)) if i not in empty])
        return out.remove_columns(["_error"])

    def _process_batch(self, batch: dict, indices: list[int], paths, n: int) -> dict:
        c = self.config
        ep = batch["episode_path"]
        before = paths[indices[0] - 1]["episode_path"] if indices[0] > 0 else None
        after = paths[indices[-1] + 1]["episode_path"] if indices[-1] + 1 < n else None
        prevs = [before] + ep[:-1]
        nexts = ep[1:] + [after]
        start_id = end_id = None
        if self._ids is not None:
            start_id, end_id = self._ids[c.episode_start_token], self._ids[c.episode_end_token]
        else:
            start_id = self.tokenizer.encode(c.episode_start_token, add_special_tokens=False)
            end_id = self.tokenizer.encode(c.episode_end_token, add_special_tokens=False)
        res = {k: [] for k in ("episode_path", "topic", "timestamp_ns", "text", "token_ids",
                               "images", "total_token_count", "_error")}
        slow: list[int] = []
        for j, raw in enumerate(batch["mcap_message"]):
            error, text, ids, images = "", "", [], []
            try:
                msg = McapMessage.from_json(raw)
                tokens, text, images = self.encoder.encode_tokens(msg)
                ids = self._fast_ids(msg) if tokens is not None else None
                text = self._expand(text)
                if ids is None:
                    slow.append(j)
            except EncodingError as exc:
                error, text, ids, images = str(exc) or "cannot encode event", "", [], []
            res["text"].append(text)
            res["token_ids"].append(ids)
            res["images"].append(images)
            res["_error"].append(error)
        if slow:  # one batched tokenizer call for every event the table could not map
            enc = self.tokenizer([res["text"][j] for j in slow], add_special_tokens=False)["input_ids"]
            for j, ids in zip(slow, enc):
                res["token_ids"][j] = ids
        for j in range(len(ep)):
            first, last = ep[j] != prevs[j], ep[j] != nexts[j]
            ids = res["token_ids"][j] or []
            if first or last:
                text = res["text"][j]
                if first:
                    text = c.episode_start_token + text
                    ids = ([start_id] if isinstance(start_id, int) else list(start_id)) + ids
                if last:
                    text = text + c.episode_end_token
                    ids = ids + ([end_id] if isinstance(end_id, int) else list(end_id))
                res["text"][j] = text
            res["token_ids"][j] = ids
            res["total_token_count"].append(len(ids))
        res["episode_path"] = ep
        res["topic"] = batch["topic"]
        res["timestamp_ns"] = batch["timestamp_ns"]
        return res
