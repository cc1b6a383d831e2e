"""Batched publishing for long-running producers (e.g. DROID episode processing).

Finished episodes are staged into a queue directory; every ``every_s`` seconds or every
``every_n`` episodes they are published as one batch to one or more repositories (each
with its own file filter, e.g. a full repo and a metadata-only repo).

All state is the queue directory itself, so a restart resumes where it stopped:

    queue/staging/<name>/   an episode being copied in (never published)
    queue/pending/<name>/   complete episodes, renamed in atomically
    queue/batches/<id>/     a batch being published; <id>/.done-<n> marks each target done
    queue/published.jsonl   one line per finished batch (receipts)

An episode moves pending -> batch by rename, a batch is removed only after every target
has its done marker, and pushes are incremental by content: a batch interrupted half-way
is re-pushed after a restart without sending again what already arrived.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from robocurate.hub.push import Target, push_folder


@dataclass
class BatchTarget:
    target: Target
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)


class BatchPublisher:
    def __init__(self, queue_dir: str | Path, targets: list[BatchTarget], *, token: str | None,
                 every_s: float = 600.0, every_n: int | None = None, push=push_folder,
                 clock=time.monotonic):
        self.queue = Path(queue_dir)
        self.targets = targets
        self.token = token
        self.every_s = every_s
        self.every_n = every_n
        self._push = push
        self._clock = clock
        self._last = clock()
        for sub in ("staging", "pending", "batches"):
            (self.queue / sub).mkdir(parents=True, exist_ok=True)
        # Copies that were in flight when the process died are incomplete: drop them.
        for leftover in (self.queue / "staging").iterdir():
            shutil.rmtree(leftover, ignore_errors=True)

    def stage(self, episode_dir: str | Path, name: str | None = None) -> Path:
        """Copy a finished episode folder into the queue; visible only once complete."""
        src = Path(episode_dir)
        name = name or src.name
        final = self.queue / "pending" / name
        if final.exists():
            raise FileExistsError(f"episode {name} is already staged")
        tmp = self.queue / "staging" / f"{name}.{uuid.uuid4().hex[:8]}"
        shutil.copytree(src, tmp)
        _fsync_tree(tmp)
        os.replace(tmp, final)
        return final

    def pending(self) -> list[str]:
        return sorted(p.name for p in (self.queue / "pending").iterdir())

    def due(self) -> bool:
        n = len(self.pending())
        if n == 0:
            return False
        if self.every_n is not None and n >= self.every_n:
            return True
        return self._clock() - self._last >= self.every_s

    def maybe_publish(self) -> list[dict]:
        return self.publish() if self.due() or self._unfinished() else []

    def publish(self) -> list[dict]:
        """Finish any interrupted batch, then publish everything pending as a new batch."""
        receipts = [self._finish(b) for b in self._unfinished()]
        names = self.pending()
        if names:
            batch = self.queue / "batches" / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
            (batch / "files").mkdir(parents=True)
            for n in names:
                os.replace(self.queue / "pending" / n, batch / "files" / n)
            receipts.append(self._finish(batch))
        self._last = self._clock()
        return receipts

    def _unfinished(self) -> list[Path]:
        return sorted(p for p in (self.queue / "batches").iterdir() if p.is_dir())

    def _finish(self, batch: Path) -> dict:
        results = []
        for i, bt in enumerate(self.targets):
            marker = batch / f".done-{i}"
            if marker.exists():
                results.append(json.loads(marker.read_text()))
                continue
            receipt = self._push(batch / "files", bt.target, self.token, include=bt.include,
                                 exclude=bt.exclude,
                                 commit_message=f"robocurate batch {batch.name}")
            marker.write_text(json.dumps(receipt))
            results.append(receipt)
        record = {"batch": batch.name, "episodes": sorted(p.name for p in (batch / "files").iterdir()),
                  "targets": results}
        with open(self.queue / "published.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        shutil.rmtree(batch)
        return record


def _fsync_tree(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
