"""OWA tokenising + packing throughput (no images) vs the original's 3,274 tokens/s.

Generates a synthetic event dataset in the real schemas (per second of recording: 20
screens, 60 mouse events with a click now and then, ~6 key events), then times:
(a) ``EpisodeTokenizer.tokenize_event_dataset`` (hierarchical encoder, local word-level
    tokenizer with the OWA vocabulary added: no Hub download);
(b) ``FSLDataset.prepare()`` + ``to_packed_dataset()`` + ``save_to_disk`` (what
    ``robocurate owa pack`` does);
(c) FSLDataset random-access iteration of every sequence with load_images=False.
Reported: tokens per second of (a)+(b) together, and of (c), against 100,000 t/s (30x
the seed's FSL line ``3,274t/s``).

    .venv/bin/python benchmarks/owa_tokenize_pack.py [--episodes 8] [--seconds 120]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402

from robocurate.owa.encoders import McapMessage  # noqa: E402
from robocurate.owa.fsl import FSLDataset  # noqa: E402
from robocurate.owa.tokenizer import EpisodeTokenizer  # noqa: E402

NAME = "owa_tokenize_pack"
SEED_TPS = 3274
TARGET = 100_000


def events(episode: str, seconds: int, rng):
    t0 = 1_750_000_000_000_000_000
    for k in range(seconds * 20):
        ts = t0 + k * 50_000_000
        yield ts, "screen", {"utc_ns": ts, "source_shape": [1920, 1080], "shape": [1920, 1080],
                             "media_ref": {"uri": f"{Path(episode).stem}.mkv", "pts_ns": k * 50_000_000}}
    for k in range(seconds * 60):
        ts = t0 + k * 16_666_666 + 3
        x, y = int(rng.integers(0, 1920)), int(rng.integers(0, 1080))
        if k % 40 == 0:
            yield ts, "mouse", {"event_type": "click", "x": x, "y": y, "button": "left", "pressed": k % 80 == 0}
        else:
            yield ts, "mouse", {"event_type": "move", "x": x, "y": y}
    for k in range(seconds * 6):
        ts = t0 + k * 166_666_666 + 7
        yield ts, "keyboard", {"event_type": "press" if k % 2 == 0 else "release", "vk": 65 + k % 26}


def build(episodes: int, seconds: int):
    rng = np.random.default_rng(0)
    kinds = {"screen": "desktop/ScreenCaptured", "mouse": "desktop/MouseEvent",
             "keyboard": "desktop/KeyboardEvent"}

    def gen():
        for e in range(episodes):
            path = f"/recordings/ep{e:03d}.mcap"
            for ts, topic, payload in sorted(events(path, seconds, rng), key=lambda x: x[0]):
                yield {"episode_path": path, "topic": topic, "timestamp_ns": ts,
                       "message_type": kinds[topic],
                       "mcap_message": McapMessage(topic, ts, orjson.dumps(payload), kinds[topic]).to_json()}

    feats = datasets.Features({"episode_path": datasets.Value("string"), "topic": datasets.Value("string"),
                               "timestamp_ns": datasets.Value("int64"), "message_type": datasets.Value("string"),
                               "mcap_message": datasets.Value("binary")})
    return datasets.Dataset.from_generator(gen, features=feats)


def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=120)
    ap.add_argument("--max-sequence-length", type=int, default=1024)
    args = ap.parse_args()
    datasets.disable_progress_bars()
    ds = build(args.episodes, args.seconds)
    tok = tokenizer()
    et = EpisodeTokenizer(image_token="<image>")
    et.prepare_model(tokenizer=tok)

    t = time.perf_counter()
    tokd = et.tokenize_event_dataset(ds)
    t_tok = time.perf_counter() - t
    tokens = int(np.sum(tokd.with_format("numpy")["total_token_count"]))

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        fsl = FSLDataset(tokd, pad_token_id=tok.pad_token_id, max_sequence_length=args.max_sequence_length,
                         load_images=False, log_every=0).prepare()
        packed = fsl.to_packed_dataset()
        packed.save_to_disk(str(Path(tmp) / "packed"))
        t_pack = time.perf_counter() - t

    t = time.perf_counter()
    n = 0
    for item in fsl:
        n += int(item["attention_mask"].sum())
    t_iter = time.perf_counter() - t

    tps = tokens / (t_tok + t_pack)
    rows = [["tokenize (a)", len(ds), tokens, t_tok, tokens / t_tok],
            ["pack+save (b)", len(fsl), tokens, t_pack, tokens / t_pack],
            ["tokenize+pack (a+b)", len(ds), tokens, t_tok + t_pack, tps],
            ["FSL iterate (c)", len(fsl), n, t_iter, n / t_iter]]
    print(_common.table(rows, ["step", "events/seqs", "tokens", "seconds", "tokens/s"]))
    print(f"\ntokenize+pack: {tps:,.0f} tokens/s = {tps / SEED_TPS:.1f}x the seed's {SEED_TPS:,} t/s "
          f"(target {TARGET:,}: {'PASS' if tps >= TARGET else 'FAIL'}); machine shared, timings noisy")
    out = _common.write_result(NAME, {
        "params": vars(args), "events": len(ds), "tokens": tokens, "sequences": len(fsl),
        "seconds": {"tokenize": t_tok, "pack_save": t_pack, "iterate": t_iter},
        "tokens_per_s": {"tokenize_pack": tps, "iterate": n / t_iter},
        "ratio_to_seed": tps / SEED_TPS, "target_tokens_per_s": TARGET, "pass": tps >= TARGET})
    print(f"result: {out}")


if __name__ == "__main__":
    main()
