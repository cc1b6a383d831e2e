"""OWA training-data flows: tokenise an event dataset, pack it into fixed-length sequences.

``owa-tokenize``: event DatasetDict (stage 1) -> tokenized DatasetDict + the prepared
tokenizer (``tokenizer/``, vocabulary added) + ``owa_tokenize.json``.
``owa-pack``: tokenized DatasetDict -> packed DatasetDict (``input_ids``,
``attention_mask``, ``texts``, ``images``, ``image_episode_paths``), so a training job
only runs ``load_from_disk`` and ``set_transform(create_packed_transform())``.

Outputs are written to a temporary folder beside the target and renamed into place: a
reader sees the previous output or the complete new one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from prefect.runtime import flow_run

from flows.runners import pipeline_flow
from robocurate.log import get_logger
from robocurate.report import build_report, now_iso, write_report

TOKENIZE_META = "owa_tokenize.json"


def _load_splits(path: str):
    """A saved DatasetDict (or single Dataset, as split ``train``) from ``path``."""
    import datasets

    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"no dataset folder at {p}")
    try:
        loaded = datasets.load_from_disk(str(p))
    except (FileNotFoundError, ValueError) as exc:
        raise ValueError(f"{p}: not a dataset saved with save_to_disk ({exc})") from exc
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


def _publish_dir(tmp: Path, out: Path, overwrite: bool) -> None:
    if out.exists():
        if not overwrite:
            raise ValueError(f"{out} exists (use --overwrite)")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _staging(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))


@pipeline_flow("owa-tokenize", named_by=("input_dir",))
def owa_tokenize(input_dir: str, output_dir: str, tokenizer: str, encoder_type: str = "hierarchical",
                 image_token: str = "<image>", image_token_length: int = 64,
                 num_proc: int | None = None, overwrite: bool = False) -> dict:
    """Tokenise every split of the event dataset at INPUT_DIR with TOKENIZER (name or path)."""
    from transformers import AutoTokenizer

    from robocurate.owa.tokenizer import EpisodeTokenizer

    started, t0 = now_iso(), time.perf_counter()
    out = Path(output_dir).resolve()
    if out.exists() and not overwrite:
        raise ValueError(f"{out} exists (use --overwrite)")
    splits = _load_splits(input_dir)
    logger = get_logger(pipeline="owa tokenize")
    try:
        tok = AutoTokenizer.from_pretrained(tokenizer)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot load tokenizer {tokenizer!r}: {exc}") from exc
    episode_tokenizer = EpisodeTokenizer(encoder_type=encoder_type, image_token=image_token,
                                         image_token_length=image_token_length)
    episode_tokenizer.prepare_model(tokenizer=tok)
    map_kwargs = {"num_proc": num_proc} if num_proc and num_proc > 1 else {}
    tokenized, summary = {}, {}
    for name, ds in splits.items():
        t = time.perf_counter()
        tokenized[name] = episode_tokenizer.tokenize_event_dataset(ds, map_kwargs=map_kwargs)
        tokens = int(sum(tokenized[name]["total_token_count"])) if len(tokenized[name]) else 0
        summary[f"{name} events"] = len(tokenized[name])
        summary[f"{name} tokens"] = tokens
        logger.info("tokenized", split=name, events=len(ds), tokens=tokens,
                    tokens_per_s=round(tokens / max(time.perf_counter() - t, 1e-9)))
    import datasets

    tmp = _staging(out)
    try:
        datasets.DatasetDict(tokenized).save_to_disk(str(tmp))
        tok.save_pretrained(str(tmp / "tokenizer"))
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        (tmp / TOKENIZE_META).write_text(json.dumps({
            "encoder_type": encoder_type, "image_token": image_token,
            "image_token_length": image_token_length, "tokenizer": tokenizer,
            "pad_token_id": pad, "vocab_size": len(tok),
            "added_vocabulary": sorted(episode_tokenizer.get_vocab())}, indent=2) + "\n")
        _publish_dir(tmp, out, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    findings = [f.to_dict() for f in episode_tokenizer.findings]
    summary["findings"] = len(findings)
    report = build_report(pipeline="owa tokenize", root=str(out), parameters={
        "input_dir": str(input_dir), "tokenizer": tokenizer, "encoder_type": encoder_type,
        "image_token": image_token, "image_token_length": image_token_length},
        started=started, seconds=time.perf_counter() - t0, summary=summary, outputs=[str(out)],
        findings=findings, run_id=str(flow_run.id or ""))
    path = write_report(out, report)
    return {"summary": summary, "report": str(path), "findings": len(findings), "output": str(out)}


@pipeline_flow("owa-pack", named_by=("input_dir",))
def owa_pack(input_dir: str, output_dir: str, max_sequence_length: int = 8192,
             pad_token_id: int | None = None, episode_aligned: bool = False,
             overwrite: bool = False) -> dict:
    """Pack every split of the tokenized dataset at INPUT_DIR into sequences of
    MAX_SEQUENCE_LENGTH tokens (pad id: given, else the tokenize step's, else 0)."""
    import datasets

    from robocurate.owa.fsl import FSLDataset

    started, t0 = now_iso(), time.perf_counter()
    out = Path(output_dir).resolve()
    if out.exists() and not overwrite:
        raise ValueError(f"{out} exists (use --overwrite)")
    if max_sequence_length <= 0:
        raise ValueError("max_sequence_length must be positive")
    splits = _load_splits(input_dir)
    meta_path = Path(input_dir) / TOKENIZE_META
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if pad_token_id is None:
        pad_token_id = meta.get("pad_token_id")
    pad_token_id = 0 if pad_token_id is None else int(pad_token_id)
    logger = get_logger(pipeline="owa pack")
    packed, summary, findings = {}, {}, []
    for name, ds in splits.items():
        fsl = FSLDataset(ds, pad_token_id=pad_token_id, max_sequence_length=max_sequence_length,
                         load_images=False, episode_aligned=episode_aligned).prepare()
        packed[name] = fsl.to_packed_dataset()
        real = int(sum(ds["total_token_count"])) if len(ds) else 0
        summary[f"{name} sequences"] = len(fsl)
        summary[f"{name} fill"] = round(real / max(1, len(fsl) * max_sequence_length), 4)
        if fsl.skipped_too_long:
            findings.append({"path": str(input_dir), "rule": "owa-event-too-long", "item": name,
                             "severity": "warning", "message": f"{fsl.skipped_too_long} events "
                             f"longer than {max_sequence_length} tokens left out"})
        logger.info("packed", split=name, sequences=len(fsl), events=len(ds))
    tmp = _staging(out)
    try:
        datasets.DatasetDict(packed).save_to_disk(str(tmp))
        src_tok = Path(input_dir) / "tokenizer"
        if src_tok.is_dir():
            shutil.copytree(src_tok, tmp / "tokenizer")
        (tmp / "owa_pack.json").write_text(json.dumps({
            **meta, "max_sequence_length": max_sequence_length, "pad_token_id": pad_token_id,
            "episode_aligned": episode_aligned}, indent=2) + "\n")
        _publish_dir(tmp, out, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary["findings"] = len(findings)
    report = build_report(pipeline="owa pack", root=str(out), parameters={
        "input_dir": str(input_dir), "max_sequence_length": max_sequence_length,
        "pad_token_id": pad_token_id, "episode_aligned": episode_aligned},
        started=started, seconds=time.perf_counter() - t0, summary=summary, outputs=[str(out)],
        findings=findings, run_id=str(flow_run.id or ""))
    path = write_report(out, report)
    return {"summary": summary, "report": str(path), "findings": len(findings), "output": str(out)}
