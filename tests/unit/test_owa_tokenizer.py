"""EpisodeTokenizer: vocabulary preparation, token ids, episode boundary tokens."""

from __future__ import annotations

import datasets
import orjson
import pytest

from robocurate.owa.encoders import McapMessage
from robocurate.owa.tokenizer import OUTPUT_COLUMNS, EpisodeTokenizer
from tests.conftest import SHARED_DATA

OWA = SHARED_DATA / "owa-mcap"


def small_tokenizer():
    """A word-level tokenizer built in memory (no Hub download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {"[PAD]": 0, "[UNK]": 1, "{": 2, "}": 3, "topic": 4, "keyboard": 5}
    tok = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")


def row(path, topic, ts, payload, kind):
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return {"episode_path": path, "topic": topic, "timestamp_ns": ts, "message_type": kind,
            "mcap_message": McapMessage(topic, ts, data, kind).to_json()}


KEY = ("keyboard", {"event_type": "press", "vk": 65}, "desktop/KeyboardEvent")
MOVE = ("mouse", {"event_type": "move", "x": 10, "y": 20}, "desktop/MouseEvent")
SCREEN = ("screen", {"utc_ns": 1, "shape": [4, 4], "media_ref": {"uri": "v.mkv", "pts_ns": 0}},
          "desktop/ScreenCaptured")
WINDOW = ("window", {"title": "x", "rect": [0, 0, 1, 1], "hWnd": 1}, "desktop/WindowInfo")


def dataset(spec):
    return datasets.Dataset.from_list([row(p, t, i * 10_000_000, pl, k)
                                       for i, (p, (t, pl, k)) in enumerate(spec)])


@pytest.fixture
def prepared():
    et = EpisodeTokenizer(image_token="<image>")
    tok = small_tokenizer()
    before = len(tok)
    et.prepare_model(tokenizer=tok)
    return et, tok, before


def test_prepare_model_adds_vocabulary_and_resizes_embeddings(prepared):
    et, tok, before = prepared
    vocab = et.get_vocab()
    assert {"<EPISODE_START>", "<EPISODE_END>", "<image>", "<TIMESTAMP>"} <= vocab
    assert len(tok) == before + len(vocab)
    for t in vocab:
        assert len(tok.encode(t, add_special_tokens=False)) == 1
    assert et._ids is not None  # the cached table is in use

    class Model:
        def resize_token_embeddings(self, n):
            self.n = n

    model = Model()
    EpisodeTokenizer().prepare_model(tokenizer=small_tokenizer(), model=model)
    assert model.n == before + len(vocab)
    with pytest.raises(RuntimeError, match="prepare_model"):
        EpisodeTokenizer().tokenize(McapMessage("keyboard", 0, b'{"event_type":"press","vk":1}', "k"))


def test_tokenize_expands_images_and_matches_the_tokenizer(prepared):
    et, tok, _ = prepared
    out = et.tokenize(row("e", *SCREEN[:1], 0, SCREEN[1], SCREEN[2])["mcap_message"])
    assert out["text"].count("<image>") == 64
    assert out["token_ids"] == tok.encode(out["text"], add_special_tokens=False)
    assert out["total_token_count"] == len(out["token_ids"]) == 1 + 4 + 1 + 64 + 1 + 1
    assert orjson.loads(out["images"][0]) == SCREEN[1]
    # a key code above 255 is no vocabulary token: the tokenizer is used for that event
    big = et.tokenize(McapMessage("keyboard", 0, b'{"event_type":"press","vk":300}', "k"))
    assert "<300>" in big["text"]
    assert big["token_ids"] == tok.encode(big["text"], add_special_tokens=False)


def test_episode_boundaries_topics_and_columns(prepared):
    et, tok, _ = prepared
    ds = dataset([("a", KEY), ("a", WINDOW), ("a", MOVE), ("b", SCREEN), ("c", MOVE), ("c", KEY)])
    out = et.tokenize_event_dataset(ds)
    assert out.column_names == list(OUTPUT_COLUMNS)
    assert out["episode_path"] == ["a", "a", "b", "c", "c"]  # the window event is left out
    texts = out["text"]
    assert texts[0].startswith("<EPISODE_START><EVENT_START>") and "<EPISODE_END>" not in texts[0]
    assert texts[1].endswith("<EVENT_END><EPISODE_END>") and "<EPISODE_START>" not in texts[1]
    assert texts[2].startswith("<EPISODE_START>") and texts[2].endswith("<EPISODE_END>")
    assert texts[4].endswith("<EPISODE_END>")  # the last episode is closed too
    for r in out:
        assert r["token_ids"] == tok.encode(r["text"], add_special_tokens=False)
        assert r["total_token_count"] == len(r["token_ids"])
    assert [len(i) for i in out["images"]] == [0, 0, 1, 0, 0]


def test_boundaries_across_map_batches_and_processes(prepared):
    et, tok, _ = prepared
    spec = [(f"ep{i // 7}", MOVE if i % 3 else KEY) for i in range(40)]
    ds = dataset(spec)
    out = et.tokenize_event_dataset(ds, map_kwargs={"batch_size": 5, "num_proc": 2})
    starts = [i for i, t in enumerate(out["text"]) if t.startswith("<EPISODE_START>")]
    ends = [i for i, t in enumerate(out["text"]) if t.endswith("<EPISODE_END>")]
    assert starts == list(range(0, 40, 7)) and ends == [6, 13, 20, 27, 34, 39]
    shuffled = ds.select([3, 2, 1, 0] + list(range(4, 40)))  # an indices mapping is honoured
    assert et.tokenize_event_dataset(shuffled, map_kwargs={"batch_size": 5})["episode_path"] == \
        [r["episode_path"] for r in shuffled]


def test_bad_event_is_a_finding_and_keeps_boundaries(prepared):
    et, _, _ = prepared
    rows = [row("a", "keyboard", 0, b"{broken", "desktop/KeyboardEvent"),
            row("a", *MOVE[:1], 1, MOVE[1], MOVE[2]),
            row("a", "mouse", 2, {"event_type": "teleport", "x": 1, "y": 1}, "desktop/MouseEvent")]
    out = et.tokenize_event_dataset(datasets.Dataset.from_list(rows))
    assert out["text"][0] == "<EPISODE_START>" and out["text"][-1] == "<EPISODE_END>"
    assert len(out) == 3 and out["total_token_count"][0] == 1
    assert [f.path for f in et.findings] == ["a", "a"]
    assert "timestamp_ns=0" == et.findings[0].item and "teleport" in et.findings[1].message


def test_json_encoder_uses_the_tokenizer(prepared):
    _, tok, _ = prepared
    et = EpisodeTokenizer(encoder_type="json")
    et.prepare_model(tokenizer=tok)
    out = et.tokenize_event_dataset(dataset([("a", KEY), ("a", SCREEN)]))
    for r in out:
        assert r["token_ids"] == tok.encode(r["text"], add_special_tokens=False)
    assert out["text"][1].count("<image>") == 64


@pytest.mark.skipif(not OWA.is_dir(), reason="OWA samples not available")
def test_table_ids_equal_tokenizer_on_every_real_event(prepared):
    from mcap.reader import make_reader

    et, tok, _ = prepared
    with open(OWA / "test-0.5.1.mcap", "rb") as f:
        msgs = [McapMessage(c.topic, m.log_time, m.data, s.name)
                for s, c, m in make_reader(f).iter_messages() if c.topic in ("keyboard", "mouse", "screen")]
    assert len(msgs) > 200
    for m in msgs:
        out = et.tokenize(m)
        assert out["token_ids"] == tok.encode(out["text"], add_special_tokens=False)
