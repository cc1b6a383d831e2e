"""owa-tokenize then owa-pack through the Prefect runtime, with a tokenizer built locally."""

import json

import numpy as np
import pytest

import robocurate.owa.preflight  # noqa: F401  registers kind "owa" (until hub.preflight imports it)

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]

SEQ = 512


def _save_small_tokenizer(path):
    """A word-level tokenizer saved like any Hub tokenizer folder (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {"[PAD]": 0, "[UNK]": 1, "{": 2, "}": 3}
    tok = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]",
                            unk_token="[UNK]").save_pretrained(str(path))
    return path


def _owa_results(folder):
    from robocurate.hub.preflight import run_preflight

    return {r["name"]: r for r in run_preflight(folder, "owa") if r["name"].startswith("owa_")}


def test_tokenize_then_pack(tmp_path):
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    from flows.owa_train import TOKENIZE_META, owa_pack, owa_tokenize
    from robocurate.owa.events import build_event_dataset
    from robocurate.samples.owa import generate_owa_recordings

    generate_owa_recordings(tmp_path / "in", files=2, minutes=0.02, with_faults=False)
    build_event_dataset(tmp_path / "in", tmp_path / "events", seed=0)
    tok_dir = _save_small_tokenizer(tmp_path / "tok")

    state = owa_tokenize(input_dir=str(tmp_path / "events"), output_dir=str(tmp_path / "tokens"),
                         tokenizer=str(tok_dir), return_state=True)
    assert state.is_completed(), state
    tokenized = state.result()
    tokens = load_from_disk(str(tmp_path / "tokens"))
    events = load_from_disk(str(tmp_path / "events"))
    assert set(tokens) == set(events) == {"train", "test"}
    for split in tokens:
        assert 0 < len(tokens[split]) <= len(events[split])
        assert tokenized["summary"][f"{split} tokens"] == sum(tokens[split]["total_token_count"])
    # The prepared tokenizer travels with the data, with the encoder vocabulary added.
    meta = json.loads((tmp_path / "tokens" / TOKENIZE_META).read_text())
    prepared = AutoTokenizer.from_pretrained(str(tmp_path / "tokens" / "tokenizer"))
    assert len(prepared) == meta["vocab_size"] > 4
    assert prepared.convert_tokens_to_ids("<EPISODE_START>") == tokens["train"][0]["token_ids"][0]

    packed_result = owa_pack(input_dir=str(tmp_path / "tokens"),
                             output_dir=str(tmp_path / "packed"), max_sequence_length=SEQ)
    packed = load_from_disk(str(tmp_path / "packed"))
    assert set(packed) == {"train", "test"}
    for split in packed:
        assert packed_result["summary"][f"{split} sequences"] == len(packed[split]) > 0
        ids = packed[split]["input_ids"]
        masks = packed[split]["attention_mask"]
        assert all(len(i) == len(m) == SEQ for i, m in zip(ids, masks))
        # Every token of every event is packed once, in order; the rest is padding.
        real = np.concatenate([np.asarray(i)[np.asarray(m) == 1] for i, m in zip(ids, masks)])
        flat = np.concatenate([np.asarray(t) for t in tokens[split]["token_ids"]])
        assert np.array_equal(real, flat)
        pads = np.concatenate([np.asarray(i)[np.asarray(m) == 0] for i, m in zip(ids, masks)])
        assert (pads == meta["pad_token_id"]).all()
    assert (tmp_path / "packed" / "tokenizer" / "tokenizer.json").is_file()

    # Both outputs are publishable OWA datasets: documented features, screens resolve.
    for folder, kind in ((tmp_path / "tokens", "tokenized"), (tmp_path / "packed", "packed")):
        r = _owa_results(folder)
        assert all(x["passed"] for x in r.values()), r
        assert f"{kind} dataset" in r["owa_features_documented"]["reason"]
        assert "2 readable videos" in r["owa_media_refs_resolve"]["reason"]
