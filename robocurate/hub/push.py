"""Publishing a folder to a Hugging Face Hub repository with the real huggingface_hub client.

Incremental and resumable by content: the remote tree is listed first, and a file whose
content is already at the same path (same LFS sha256, or same git blob id) is not sent.
Uploads go in several commits, so an interrupted push keeps what was committed and a
re-run sends only the rest. 429, 5xx and connection errors are retried with exponential
backoff; 401/403 stop at once. The token is never put in messages or results.
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass
from pathlib import Path

from robocurate.hub.preflight import selected_files

LFS_THRESHOLD = 10 * 1024 * 1024
LFS_SUFFIXES = {".h5", ".hdf5", ".mp4", ".mkv", ".avi", ".npz", ".npy", ".pt", ".parquet",
                ".arrow", ".mcap", ".gif", ".png", ".jpg", ".jpeg", ".zip", ".tar", ".gz",
                ".bin", ".safetensors", ".pkl", ".ffv1"}


class PushError(RuntimeError):
    pass


class PushAuthError(PushError):
    """401/403: retrying cannot help."""


@dataclass
class Target:
    repo_id: str
    repo_type: str = "dataset"
    revision: str = "main"
    private: bool = False
    path_in_repo: str = "."
    endpoint: str | None = None


def content_ids(path: Path) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file in one streamed pass: the two ids the Hub keeps."""
    size = path.stat().st_size
    sha256, sha1 = hashlib.sha256(), hashlib.sha1()
    sha1.update(b"blob %d\0" % size)
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            sha256.update(chunk)
            sha1.update(chunk)
    return sha256.hexdigest(), sha1.hexdigest()


def _repo_path(rel: str, path_in_repo: str) -> str:
    base = path_in_repo.strip("/")
    return rel if base in ("", ".") else f"{base}/{rel}"


def remote_files(api, target: Target) -> dict[str, dict]:
    """{path: {size, sha256 | None, blob_id}} of the remote revision ({} if it is new)."""
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        entries = _with_retries(lambda: list(api.list_repo_tree(
            target.repo_id, recursive=True, revision=target.revision, repo_type=target.repo_type)))
    except (RepositoryNotFoundError, RevisionNotFoundError):
        return {}
    out = {}
    for e in entries:
        if getattr(e, "size", None) is None:  # folders
            continue
        lfs = getattr(e, "lfs", None)
        out[e.path] = {"size": e.size, "blob_id": e.blob_id,
                       "sha256": getattr(lfs, "sha256", None) if lfs else None}
    return out


def plan_push(folder: str | Path, target: Target, remote: dict[str, dict],
              include=(), exclude=()) -> dict:
    """What a push would do: every file with its size, LFS or not, and upload or skip."""
    folder = Path(folder)
    files = []
    for p in selected_files(folder, include, exclude):
        rel = p.relative_to(folder).as_posix()
        size = p.stat().st_size
        sha256, blob_id = content_ids(p)
        repo_path = _repo_path(rel, target.path_in_repo)
        have = remote.get(repo_path)
        same = have is not None and have["size"] == size and (
            have["sha256"] == sha256 if have["sha256"] else have["blob_id"] == blob_id)
        files.append({"path": repo_path, "local": str(p), "size": size, "sha256": sha256,
                      "lfs": size >= LFS_THRESHOLD or p.suffix.lower() in LFS_SUFFIXES,
                      "action": "skip" if same else "upload",
                      "reason": "same content on the remote" if same else
                      ("changed on the remote side" if have else "new")})
    upload = [f for f in files if f["action"] == "upload"]
    return {"repo_id": target.repo_id, "repo_type": target.repo_type,
            "revision": target.revision, "files": files,
            "upload_files": len(upload), "upload_bytes": sum(f["size"] for f in upload),
            "skip_files": len(files) - len(upload)}


def _status(exc) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _with_retries(fn, *, attempts: int = 6, base: float = 1.0, max_delay: float = 60.0,
                  sleep=time.sleep):
    """Call ``fn``, retrying 429/5xx/connection failures with exponential backoff + jitter."""
    from huggingface_hub.errors import HfHubHTTPError

    for attempt in range(attempts):
        try:
            return fn()
        except HfHubHTTPError as exc:
            status = _status(exc)
            if status in (401, 403):
                raise PushAuthError(
                    f"the Hub refused the token (HTTP {status}): check HF_TOKEN or the token "
                    "block has write access to this repository") from None
            if status is not None and status != 429 and status < 500:
                raise
            retry_after = getattr(getattr(exc, "response", None), "headers", {}).get("Retry-After")
            delay = float(retry_after) if retry_after and retry_after.isdigit() else \
                min(max_delay, base * 2 ** attempt) * (1 + random.random() / 2)
        except (ConnectionError, TimeoutError):
            delay = min(max_delay, base * 2 ** attempt) * (1 + random.random() / 2)
        except Exception as exc:
            # Connection failures of the client's HTTP library (httpx or httpx2, depending
            # on the huggingface_hub version) all derive from its TransportError.
            if not any(c.__name__ == "TransportError" for c in type(exc).__mro__):
                raise
            delay = min(max_delay, base * 2 ** attempt) * (1 + random.random() / 2)
        if attempt == attempts - 1:
            raise PushError(f"giving up after {attempts} attempts") from None
        sleep(delay)


def _batches(files: list[dict], max_files: int, max_bytes: int):
    batch, size = [], 0
    for f in files:
        if batch and (len(batch) >= max_files or size + f["size"] > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(f)
        size += f["size"]
    if batch:
        yield batch


def push_folder(folder: str | Path, target: Target, token: str | None, *, include=(), exclude=(),
                commit_message: str = "Upload with robocurate", max_files_per_commit: int = 200,
                max_bytes_per_commit: int = 2 * 1000**3, retry_base: float = 1.0) -> dict:
    """Create the repo if needed and send what differs; returns the push receipt."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=target.endpoint, token=token)
    _with_retries(lambda: api.create_repo(target.repo_id, repo_type=target.repo_type,
                                          private=target.private, exist_ok=True), base=retry_base)
    if target.revision != "main":
        _with_retries(lambda: api.create_branch(target.repo_id, branch=target.revision,
                                                repo_type=target.repo_type, exist_ok=True),
                      base=retry_base)
    plan = plan_push(folder, target, remote_files(api, target), include, exclude)
    to_send = [f for f in plan["files"] if f["action"] == "upload"]
    commits = []
    batches = list(_batches(to_send, max_files_per_commit, max_bytes_per_commit))
    for i, batch in enumerate(batches, 1):
        ops = [CommitOperationAdd(path_in_repo=f["path"], path_or_fileobj=f["local"])
               for f in batch]
        message = commit_message if len(batches) == 1 else f"{commit_message} ({i}/{len(batches)})"
        info = _with_retries(lambda: api.create_commit(
            target.repo_id, ops, commit_message=message, repo_type=target.repo_type,
            revision=target.revision), base=retry_base)
        commits.append({"oid": info.oid, "url": str(info.commit_url), "files": len(batch),
                        "bytes": sum(f["size"] for f in batch)})
    return {
        "repo_id": target.repo_id, "repo_type": target.repo_type, "revision": target.revision,
        "endpoint": target.endpoint or "https://huggingface.co",
        "commits": commits,
        "sent": {"files": len(to_send), "bytes": sum(f["size"] for f in to_send),
                 "paths": [f["path"] for f in to_send]},
        "skipped": [{"path": f["path"], "reason": f["reason"]} for f in plan["files"]
                    if f["action"] == "skip"],
    }
