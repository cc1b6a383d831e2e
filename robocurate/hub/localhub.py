"""A local, Hugging Face Hub-compatible HTTP server, for tests and air-gapped runs.

``LocalHub`` serves the subset of the Hub HTTP API that the real ``huggingface_hub``
client (2.x) uses to create repositories, list and read them, and push commits with
regular and Git LFS files. It is a real HTTP server (standard library
``ThreadingHTTPServer``, no extra dependency), so the client is exercised end to end:
its retries, its LFS upload code, its download cache.

    with LocalHub(tmp_path / "hub", token="hf_test_token") as hub:
        api = HfApi(endpoint=hub.url, token="hf_test_token")
        api.create_repo("me/ds", repo_type="dataset", exist_ok=True)
        api.upload_folder(repo_id="me/ds", repo_type="dataset", folder_path=folder)

Endpoints (``{t}`` is ``models``, ``datasets`` or ``spaces``; ``{p}`` is the URL prefix
of a repo type: ``""``, ``"datasets/"`` or ``"spaces/"``; revisions are URL-quoted with
``safe=""`` by the client, so ``refs/pr/1`` arrives as one segment ``refs%2Fpr%2F1``):

    GET    /api/whoami-v2
    POST   /api/repos/create                     {name, organization, type, private|visibility}
    DELETE /api/repos/delete                     {name, organization, type}
    POST   /api/validate-yaml                    README.md front matter check
    GET    /api/{t}/{id}[/revision/{rev}]        repo_info / dataset_info / model_info
    GET    /api/{t}/{id}/tree/{rev}[/{path}]     list_repo_tree / list_repo_files (?recursive, ?expand, Link pagination)
    POST   /api/{t}/{id}/paths-info/{rev}        get_paths_info (form: paths=..., expand=...)
    POST   /api/{t}/{id}/preupload/{rev}         "regular" or "lfs" per file, + remote oid
    POST   /api/{t}/{id}/commit/{rev}            NDJSON commit (header, file, lfsFile, deletedFile, deletedFolder)
    POST   /api/{t}/{id}/branch/{branch}         create_branch ({startingPoint}); DELETE: delete_branch
    POST   /api/{t}/{id}/tag/{rev}               create_tag ({tag, message}); DELETE /tag/{tag}: delete_tag
    GET    /api/{t}/{id}/refs                    list_repo_refs
    GET    /api/{t}/{id}/commits/{rev}           list_repo_commits
    PUT    /api/{t}/{id}/settings                update_repo_settings (private)
    GET    /api/{t}/{id}/xet-{read,write}-token/ 501: Xet is not implemented (see below)
    POST   /{p}{id}.git/info/lfs/objects/batch   Git LFS batch API (upload: basic + HF multipart; download)
    POST   /{p}{id}.git/info/lfs/objects/verify  LFS verify action
    GET|HEAD /{p}{id}/resolve/{rev}/{path}       hf_hub_download (X-Repo-Commit, ETag, X-Linked-Etag/-Size, Range)
    PUT    /_lfs/upload/{oid}?...                pre-signed basic LFS upload (hash and size checked)
    PUT    /_lfs/part/{oid}/{upload}/{n}?...     pre-signed multipart part; POST /_lfs/complete/{oid}/{upload}?...
    GET    /_lfs/download/{oid}?...              pre-signed LFS download (for git-lfs clients)

Xet. ``huggingface_hub`` 2.x decides *on the client side* whether to upload through Xet:
``is_xet_available()`` is true as soon as the ``hf_xet`` package is installed, unless
``HF_HUB_DISABLE_XET`` is set. Nothing in a server answer (preupload, LFS batch
``transfer``) can turn it off for uploads: ``upload_folder`` then takes the Xet
"pipelined" path and ``create_commit`` sends LFS files to Xet after asking
``/xet-write-token``. So ``LocalHub.start()`` calls :func:`disable_xet_in_client` (sets
``HF_HUB_DISABLE_XET=1`` in ``os.environ``, inherited by subprocesses, and patches
``huggingface_hub.constants.HF_HUB_DISABLE_XET`` if the client is already imported;
``stop()`` restores both); pass ``patch_client_xet=False`` to leave the process alone,
and set ``HF_HUB_DISABLE_XET=1`` yourself for clients in other processes. On the
server side nothing ever advertises Xet: no ``X-Xet-*`` headers or ``Link: rel=xet-auth``
on resolve (downloads are Xet only when those are present), no ``xetHash`` in tree
listings, the LFS batch answers ``"transfer": "basic"`` (or ``"multipart"``), and the
Xet token endpoints answer 501 with a message that says to set ``HF_HUB_DISABLE_XET=1``.

Storage (under ``root_dir``, survives restarts): ``repos/{t}/{ns}/{name}/repo.json``
(visibility, branches, tags, PR refs) and ``commits/{oid}.json`` (id, parents, title,
message, date, full tree: path -> {size, oid (git blob sha1, of the LFS pointer for
LFS files), sha256, lfs, pointer_size}); regular blobs under ``objects/`` by git sha1;
LFS objects under ``lfs/objects/`` by sha256 (one store for all repos). Commit, tree
and blob ids are real git object ids.

Auth: ``Authorization: Bearer <token>``. The write token may do everything; tokens in
``read_tokens`` get 403 on writes; no token or an unknown one gets 401 (anonymous reads of
public repos are allowed with ``allow_anonymous_read=True``). LFS upload URLs are
pre-signed (HMAC, expiring), like S3 URLs, because the client sends them no token.

Test helpers: ``fail_next(n, status=503|429|500, path_contains=..., method=...)``
makes the next n matching requests fail (429 with ``Retry-After``); ``requests`` logs
``(method, path, status)`` of every request; ``commits()``, ``files()``, ``read_file()``,
``branches()``, ``lfs_object_path()`` inspect the stored state.

CLI: ``python -m robocurate.hub.localhub --root DIR --port 8999 --token T``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import socket
import sys
import threading
import time
import traceback
from collections import defaultdict
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator, NamedTuple
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

__all__ = ["LocalHub", "RequestRecord", "disable_xet_in_client", "upload_mode_for",
           "git_blob_oid", "lfs_pointer", "DEFAULT_GITATTRIBUTES"]

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}

# The Hub stores as LFS what its .gitattributes marks `filter=lfs`, anything of 10 MiB or
# more, and binary content (a NUL byte in the 512-byte sample the client sends).
LFS_THRESHOLD = 10 * 1024 * 1024
# Robot-data formats that robocurate always sends as LFS (on top of .gitattributes).
EXTRA_LFS_PATTERNS = ("*.h5", "*.hdf5", "*.mp4", "*.mkv", "*.avi", "*.webm", "*.npz", "*.npy",
                      "*.pt", "*.parquet", "*.arrow", "*.mcap", "*.gif", "*.png", "*.jpg",
                      "*.jpeg", "*.zip", "*.tar", "*.gz", "*.bin", "*.safetensors", "*.pkl",
                      "*.ffv1")

_LFS_ATTRS = "filter=lfs diff=lfs merge=lfs -text"
DEFAULT_GITATTRIBUTES = "".join(f"{p} {_LFS_ATTRS}\n" for p in (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib",
    "*.lfs.*", "*.lz4", "*.mds", "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz",
    "*.onnx", "*.ot", "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar",
    "*.safetensors", "saved_model/**/*", "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm",
    "*.xz", "*.zip", "*.zst", "*tfevents*",
    "*.mp3", "*.ogg", "*.wav", "*.flac",
    "*.bmp", "*.gif", "*.png", "*.tiff", "*.jpg", "*.jpeg", "*.webp",
    "*.mp4", "*.webm",
))

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_OID_RE = re.compile(r"^[0-9a-f]{40}$")
_CHUNK = 1 << 20


class RequestRecord(NamedTuple):
    method: str
    path: str
    status: int


class HubError(Exception):
    """An HTTP error answer, with the Hub's X-Error-Code / X-Error-Message headers."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 headers: dict[str, str] | None = None, body: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = headers or {}
        self.body = body or {}


# ----------------------------------------------------------------------------- git ids


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _tree_oids(files: dict[str, dict]) -> dict[str, str]:
    """Git tree ids of every directory ("" is the root) of a flat path -> entry map."""
    children: dict[str, dict[str, tuple[str, str]]] = defaultdict(dict)
    children[""] = {}
    for path, entry in files.items():
        parts = path.split("/")
        for i in range(len(parts) - 1):
            children["/".join(parts[:i])][parts[i]] = ("tree", "/".join(parts[:i + 1]))
        children["/".join(parts[:-1])][parts[-1]] = ("blob", entry["oid"])
    oids: dict[str, str] = {}

    def build(d: str) -> str:
        items = []
        for name, (kind, value) in children[d].items():
            if kind == "tree":
                items.append((name + "/", b"40000 " + name.encode() + b"\0" + bytes.fromhex(build(value))))
            else:
                items.append((name, b"100644 " + name.encode() + b"\0" + bytes.fromhex(value)))
        data = b"".join(raw for _, raw in sorted(items, key=lambda it: it[0].encode()))
        oids[d] = hashlib.sha1(b"tree %d\0" % len(data) + data).hexdigest()
        return oids[d]

    build("")
    return oids


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# ----------------------------------------------------------------- gitattributes / ignore


def _glob_regex(pattern: str) -> re.Pattern:
    """A git-style glob (``*`` stays within a segment, ``**`` crosses them) as a regex."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1:j].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _glob_match(pattern: str, path: str) -> bool:
    """git semantics: a pattern without '/' matches the basename at any depth."""
    pattern = pattern.strip()
    if not pattern:
        return False
    if "/" not in pattern.rstrip("/"):
        return bool(_glob_regex(pattern).match(path.rsplit("/", 1)[-1]))
    return bool(_glob_regex(pattern.lstrip("/")).match(path))


def _lfs_patterns(gitattributes: str) -> list[str]:
    pats = []
    for line in gitattributes.splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#") and "filter=lfs" in fields[1:]:
            pats.append(fields[0])
    return pats


def _ignored(gitignore: str | None, path: str) -> bool:
    if not gitignore:
        return False
    ignored = False
    parts = path.split("/")
    for raw in gitignore.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if negate:
            line = line[1:]
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        anchored = "/" in line
        candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + (0 if dir_only else 1))]
        hit = False
        for cand in candidates:
            target = cand if anchored else cand.rsplit("/", 1)[-1]
            if _glob_regex(line.lstrip("/")).match(target):
                hit = True
                break
        if hit:
            ignored = not negate
    return ignored


def upload_mode_for(path: str, size: int, sample: bytes, gitattributes: str | None,
                    extra_patterns=EXTRA_LFS_PATTERNS, threshold: int = LFS_THRESHOLD) -> str:
    """"lfs" or "regular", the Hub's rule as the client expects it from /preupload."""
    if size == 0:
        return "regular"
    if size >= threshold or b"\0" in sample:
        return "lfs"
    patterns = list(extra_patterns) + _lfs_patterns(gitattributes or "")
    return "lfs" if any(_glob_match(p, path) for p in patterns) else "regular"


# ----------------------------------------------------------------------- client side


_XET_SAVED: list[tuple[str | None, Any]] = []


def disable_xet_in_client() -> None:
    """Make huggingface_hub in this process (and its future subprocesses) skip Xet.

    The client picks Xet for uploads when ``hf_xet`` is importable unless
    ``HF_HUB_DISABLE_XET`` is set; the constant is read at import, so it is patched
    too when the client is already imported.
    """
    consts = sys.modules.get("huggingface_hub.constants")
    _XET_SAVED.append((os.environ.get("HF_HUB_DISABLE_XET"),
                       getattr(consts, "HF_HUB_DISABLE_XET", None) if consts else None))
    os.environ["HF_HUB_DISABLE_XET"] = "1"
    if consts is not None:
        consts.HF_HUB_DISABLE_XET = True


def _restore_xet_in_client() -> None:
    if not _XET_SAVED:
        return
    env, const = _XET_SAVED.pop()
    if _XET_SAVED:  # another LocalHub still running in this process
        return
    if env is None:
        os.environ.pop("HF_HUB_DISABLE_XET", None)
    else:
        os.environ["HF_HUB_DISABLE_XET"] = env
    consts = sys.modules.get("huggingface_hub.constants")
    if consts is not None:
        consts.HF_HUB_DISABLE_XET = const if const is not None else (
            os.environ.get("HF_HUB_DISABLE_XET", "").upper() in ("1", "ON", "YES", "TRUE"))


# ---------------------------------------------------------------------------- storage


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


class _Store:
    """Repos, commits and objects on disk; every mutation under one lock."""

    def __init__(self, root: Path):
        self.root = root
        self.lock = threading.RLock()
        self.repos: dict[tuple[str, str], dict] = {}
        self._commits: dict[str, dict] = {}
        for sub in ("repos", "objects", "lfs/objects", "lfs/tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        for meta in (root / "repos").glob("*/*/*/repo.json"):
            data = json.loads(meta.read_text())
            self.repos[(data["type"], data["id"])] = data

    # paths
    def repo_dir(self, rtype: str, repo_id: str) -> Path:
        return self.root / "repos" / f"{rtype}s" / repo_id

    def blob_path(self, oid: str) -> Path:
        return self.root / "objects" / oid[:2] / oid[2:]

    def lfs_path(self, sha: str) -> Path:
        return self.root / "lfs" / "objects" / sha[:2] / sha[2:4] / sha

    def lfs_size(self, sha: str) -> int | None:
        p = self.lfs_path(sha)
        return p.stat().st_size if p.is_file() else None

    def tmp_dir(self) -> Path:
        return self.root / "lfs" / "tmp"

    # objects
    def put_blob(self, data: bytes) -> str:
        oid = git_blob_oid(data)
        p = self.blob_path(oid)
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_name(f".{oid}.{secrets.token_hex(4)}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, p)
        return oid

    def put_lfs_file(self, tmp: Path, sha: str) -> None:
        dest = self.lfs_path(sha)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            tmp.unlink(missing_ok=True)
        else:
            os.replace(tmp, dest)

    # repos
    def save_repo(self, repo: dict) -> None:
        _write_json(self.repo_dir(repo["type"], repo["id"]) / "repo.json", repo)

    def commit(self, repo: dict, oid: str) -> dict:
        c = self._commits.get(oid)
        if c is None:
            p = self.repo_dir(repo["type"], repo["id"]) / "commits" / f"{oid}.json"
            c = json.loads(p.read_text())
            self._commits[oid] = c
        return c

    def has_commit(self, repo: dict, oid: str) -> bool:
        return (self.repo_dir(repo["type"], repo["id"]) / "commits" / f"{oid}.json").is_file()

    def new_commit(self, repo: dict, parent: str | None, files: dict[str, dict], title: str,
                   message: str, author: str) -> dict:
        trees = _tree_oids(files)
        ts = int(time.time())
        while True:
            body = f"tree {trees['']}\n"
            if parent:
                body += f"parent {parent}\n"
            ident = f"{author} <{author}@localhub> {ts} +0000"
            full = title + (f"\n\n{message}" if message else "")
            body += f"author {ident}\ncommitter {ident}\n\n{full}\n"
            raw = body.encode()
            oid = hashlib.sha1(b"commit %d\0" % len(raw) + raw).hexdigest()
            if not self.has_commit(repo, oid):
                break
            ts += 1  # same content, parent and second: git would collide, we do not
        commit = {"id": oid, "parents": [parent] if parent else [], "title": title,
                  "message": message, "author": author, "date": _iso(ts), "files": files,
                  "trees": trees}
        _write_json(self.repo_dir(repo["type"], repo["id"]) / "commits" / f"{oid}.json", commit)
        self._commits[oid] = commit
        return commit

    def read_entry(self, entry: dict) -> Path:
        return self.lfs_path(entry["sha256"]) if entry["lfs"] else self.blob_path(entry["oid"])


# ------------------------------------------------------------------------ HTTP plumbing


class _Body:
    """The request body as a stream, Content-Length or chunked; drained if left unread."""

    def __init__(self, rfile, headers):
        self.rfile = rfile
        self.chunked = "chunked" in (headers.get("Transfer-Encoding") or "").lower()
        self.remaining = int(headers.get("Content-Length") or 0) if not self.chunked else None
        self.done = not self.chunked and self.remaining == 0
        self.length = None if self.chunked else self.remaining

    def __iter__(self) -> Iterator[bytes]:
        if self.done:
            return
        if not self.chunked:
            while self.remaining > 0:
                data = self.rfile.read(min(_CHUNK, self.remaining))
                if not data:
                    raise HubError(400, "request body ended early")
                self.remaining -= len(data)
                yield data
        else:
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                left = size
                while left > 0:
                    data = self.rfile.read(min(_CHUNK, left))
                    if not data:
                        raise HubError(400, "request body ended early")
                    left -= len(data)
                    yield data
                self.rfile.readline(16)
        self.done = True

    def read(self) -> bytes:
        return b"".join(self)

    def drain(self) -> None:
        if not self.done:
            for _ in self:
                pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    hub: "LocalHub"

    def __init__(self, *args, **kwargs):
        self.connections: set = set()
        self.conn_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def close_connections(self) -> None:
        """Cut keep-alive connections, so a stopped hub answers nothing more."""
        with self.conn_lock:
            conns, self.connections = list(self.connections), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    _logged = False  # per request; reset by _handle
    protocol_version = "HTTP/1.1"
    server_version = "robocurate-localhub/1"
    timeout = 120  # idle keep-alive connections are dropped after this
    server: _Server

    def setup(self):
        super().setup()
        with self.server.conn_lock:
            self.server.connections.add(self.connection)

    def finish(self):
        with self.server.conn_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    # -- plumbing
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        if self.server.hub.verbose:
            super().log_message(format, *args)

    def send_response(self, code, message=None):
        self._status = code
        # Logged before the client can read the answer, so a test that has its response
        # also sees the request in hub.requests.
        if not self._logged:
            self._logged = True
            self.server.hub._log(self.command, urlsplit(self.path).path, code)
        super().send_response(code, message)

    def _base(self) -> str:
        return f"http://{self.headers.get('Host') or self.server.hub._host_port}"

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, data: Any, status: int = 200, headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self._send(status, json.dumps(data).encode(), headers, content_type)

    def _error(self, err: HubError) -> None:
        message = err.message.replace("\n", " ")[:500].encode("latin-1", "replace").decode("latin-1")
        headers = {"X-Error-Message": message, **err.headers}
        if err.code:
            headers["X-Error-Code"] = err.code
        self._json({"error": err.message, **err.body}, err.status, headers)

    def _handle(self) -> None:
        hub = self.server.hub
        self._status = 0
        self._logged = False
        split = urlsplit(self.path)
        self._query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        self._body = _Body(self.rfile, self.headers)
        try:
            fault = hub._take_fault(self.command, split.path)
            if fault is not None:
                raise fault
            self._route(split.path)
        except HubError as err:
            if self._drained():  # read what the client sent before answering
                self._error(err)
        except json.JSONDecodeError as exc:
            if self._drained():
                self._error(HubError(400, f"Malformed JSON body: {exc}"))
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # a bug here must show in the test, not hang the client
            traceback.print_exc()
            if self._drained():
                self._error(HubError(500, f"LocalHub internal error: {exc!r}"))
        finally:
            self._drained()
            if not self._logged:  # no answer was sent (the connection went away)
                hub._log(self.command, split.path, self._status)

    def _drained(self) -> bool:
        """Consume the rest of the body (keep-alive needs it); False if the connection is gone."""
        if self.close_connection:
            return False
        try:
            self._body.drain()
            return True
        except (HubError, OSError, ValueError):
            self.close_connection = True
            return False

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle

    # -- auth
    def _role(self, write: bool, repo: dict | None = None) -> str | None:
        hub = self.server.hub
        auth = self.headers.get("Authorization") or ""
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        if not token:
            if write or not hub.allow_anonymous_read:
                raise HubError(401, "Authentication required: send 'Authorization: Bearer <token>'")
            if repo is not None and repo.get("private"):
                raise HubError(401, "Repository not found", "RepoNotFound")
            return None
        if token == hub.token:
            role = "write"
        elif token in hub.read_tokens:
            role = "read"
        else:
            raise HubError(401, "Invalid credentials in Authorization header")
        if write and role != "write":
            raise HubError(403, "You don't have the rights to write to this repository: "
                                "the token is read-only")
        return role

    def _repo(self, rtype: str, repo_id: str, write: bool = False) -> dict:
        self._role(write=False)  # 401 before 404, like the Hub
        repo = self.server.hub._store.repos.get((rtype, repo_id))
        if repo is None:
            raise HubError(404, f"Repository not found: {URL_PREFIX[rtype]}{repo_id}", "RepoNotFound")
        self._role(write=write, repo=repo)
        return repo

    # -- routing
    def _route(self, path: str) -> None:
        segs = path.split("/")[1:]
        if segs and segs[-1] == "" and len(segs) > 1:
            segs = segs[:-1]
        m = self.command
        if segs == [""]:
            return self._json({"service": "robocurate-localhub", "xet": False})
        if segs[0] == "api":
            return self._route_api(segs[1:])
        if segs[0] == "_lfs":
            return self._route_storage([unquote(s) for s in segs[1:]])
        rtype = "model"
        if segs[0] in ("datasets", "spaces") and len(segs) > 2:
            rtype, segs = REPO_TYPES[segs[0]], segs[1:]
        if len(segs) >= 2 and segs[1].endswith(".git"):
            repo_id = self._repo_id(segs[0], segs[1][:-4])
            rest = segs[2:]
            if rest == ["info", "lfs", "objects", "batch"] and m == "POST":
                return self._lfs_batch(rtype, repo_id)
            if rest == ["info", "lfs", "objects", "verify"] and m == "POST":
                return self._lfs_verify(rtype, repo_id)
        elif len(segs) >= 5 and segs[2] == "resolve" and m in ("GET", "HEAD"):
            return self._resolve(rtype, self._repo_id(segs[0], segs[1]), unquote(segs[3]),
                                 "/".join(unquote(s) for s in segs[4:]))
        raise HubError(404, f"Not found: {m} {path}")

    @staticmethod
    def _repo_id(ns: str, name: str) -> str:
        ns, name = unquote(ns), unquote(name)
        if not (_NAME_RE.match(ns) and _NAME_RE.match(name)) or ".." in ns + name:
            raise HubError(400, f"Invalid repo id: {ns}/{name!r}")
        return f"{ns}/{name}"

    def _route_api(self, segs: list[str]) -> None:
        m = self.command
        if segs == ["whoami-v2"] and m == "GET":
            return self._whoami()
        if segs == ["repos", "create"] and m == "POST":
            return self._create_repo()
        if segs == ["repos", "delete"] and m == "DELETE":
            return self._delete_repo()
        if segs == ["validate-yaml"] and m == "POST":
            return self._validate_yaml()
        if len(segs) >= 3 and segs[0] in REPO_TYPES:
            rtype = REPO_TYPES[segs[0]]
            repo_id = self._repo_id(segs[1], segs[2])
            rest = [unquote(s) for s in segs[3:]]
            head = rest[0] if rest else ""
            if not rest and m == "GET":
                return self._info(rtype, repo_id, None)
            if head == "revision" and len(rest) >= 2 and m == "GET":
                return self._info(rtype, repo_id, "/".join(rest[1:]))
            if head == "tree" and len(rest) >= 2 and m == "GET":
                return self._tree(rtype, repo_id, rest[1], "/".join(rest[2:]))
            if head == "paths-info" and len(rest) == 2 and m == "POST":
                return self._paths_info(rtype, repo_id, rest[1])
            if head == "preupload" and len(rest) == 2 and m == "POST":
                return self._preupload(rtype, repo_id, rest[1])
            if head == "commit" and len(rest) == 2 and m == "POST":
                return self._commit(rtype, repo_id, rest[1])
            if head == "branch" and len(rest) >= 2 and m in ("POST", "DELETE"):
                return self._branch(rtype, repo_id, "/".join(rest[1:]))
            if head == "tag" and len(rest) >= 2 and m in ("POST", "DELETE"):
                return self._tag(rtype, repo_id, "/".join(rest[1:]))
            if rest == ["refs"] and m == "GET":
                return self._refs(rtype, repo_id)
            if head == "commits" and len(rest) >= 2 and m == "GET":
                return self._commits(rtype, repo_id, "/".join(rest[1:]))
            if rest == ["settings"] and m == "PUT":
                return self._settings(rtype, repo_id)
            if head in ("xet-read-token", "xet-write-token"):
                raise HubError(501, "LocalHub does not implement the Xet protocol: set "
                                    "HF_HUB_DISABLE_XET=1 in the client so it uses Git LFS")
        raise HubError(404, f"Not found: {m} /api/{'/'.join(segs)}")

    # -- account
    def _whoami(self) -> None:
        role = self._role(write=False)
        if role is None:
            raise HubError(401, "Authentication required: send 'Authorization: Bearer <token>'")
        name = self.server.hub.username
        self._json({"type": "user", "id": hashlib.sha1(name.encode()).hexdigest()[:24],
                    "name": name, "fullname": f"{name} (LocalHub)", "email": f"{name}@localhub",
                    "emailVerified": True, "isPro": False, "canPay": False, "orgs": [],
                    "auth": {"type": "access_token",
                             "accessToken": {"displayName": "localhub", "role": role}}})

    def _validate_yaml(self) -> None:
        payload = json.loads(self._body.read() or b"{}")
        content = payload.get("content") or ""
        if content.startswith("---"):
            end = content.find("\n---", 3)
            front = content[3:end] if end >= 0 else ""
            try:
                import yaml  # optional: prefect brings it; without it, no check
            except ImportError:
                yaml = None
            if yaml is not None:
                try:
                    meta = yaml.safe_load(front)
                    if meta is not None and not isinstance(meta, dict):
                        raise ValueError("metadata must be a mapping")
                except Exception as exc:  # yaml.YAMLError and the mapping check
                    return self._json({"errors": [{"message": f"Invalid YAML: {exc}"}],
                                       "warnings": []}, 400)
        self._json({"errors": [], "warnings": []})

    # -- repos
    def _create_repo(self) -> None:
        role = self._role(write=False)
        hub, store = self.server.hub, self.server.hub._store
        payload = json.loads(self._body.read() or b"{}")
        rtype = payload.get("type") or "model"
        if rtype not in URL_PREFIX:
            raise HubError(400, f"Invalid repo type: {rtype}")
        repo_id = self._repo_id(payload.get("organization") or hub.username, payload.get("name") or "")
        private = payload.get("visibility") == "private" if "visibility" in payload \
            else bool(payload.get("private", False))
        url = f"{self._base()}/{URL_PREFIX[rtype]}{repo_id}"
        with store.lock:
            # 409 before 403: huggingface_hub 2.4 create_repo(exist_ok=True) handles a 409, but
            # on a 403 it builds RepoUrl(url) without its endpoint, which fails on a custom host
            if (rtype, repo_id) in store.repos and role is not None:
                raise _conflict(url, rtype)
            self._role(write=True)
            repo = {"type": rtype, "id": repo_id, "private": private,
                    "createdAt": _iso(time.time()), "branches": {"main": None}, "tags": {},
                    "prs": {}}
            files = {}
            if hub.init_gitattributes:
                data = DEFAULT_GITATTRIBUTES.encode()
                files[".gitattributes"] = _regular_entry(data, store.put_blob(data))
            store.repos[(rtype, repo_id)] = repo
            c = store.new_commit(repo, None, files, "initial commit", "", hub.username)
            repo["branches"]["main"] = c["id"]
            store.save_repo(repo)
        self._json({"url": url, "name": repo_id, "id": hashlib.sha1(url.encode()).hexdigest()[:24]})

    def _delete_repo(self) -> None:
        self._role(write=True)
        hub, store = self.server.hub, self.server.hub._store
        payload = json.loads(self._body.read() or b"{}")
        rtype = payload.get("type") or "model"
        repo_id = self._repo_id(payload.get("organization") or hub.username, payload.get("name") or "")
        with store.lock:
            if store.repos.pop((rtype, repo_id), None) is None:
                raise HubError(404, "Repository not found", "RepoNotFound")
            shutil.rmtree(store.repo_dir(rtype, repo_id), ignore_errors=True)
        self._json({})

    def _settings(self, rtype: str, repo_id: str) -> None:
        repo = self._repo(rtype, repo_id, write=True)
        payload = json.loads(self._body.read() or b"{}")
        store = self.server.hub._store
        with store.lock:
            if "private" in payload:
                repo["private"] = bool(payload["private"])
            if "visibility" in payload:
                repo["private"] = payload["visibility"] == "private"
            store.save_repo(repo)
        self._json({})

    # -- revisions
    def _resolve_rev(self, repo: dict, rev: str | None) -> str:
        rev = rev or "main"
        for table in ("branches", "tags", "prs"):
            if rev in repo[table] and repo[table][rev]:
                return repo[table][rev]
        store = self.server.hub._store
        if _OID_RE.match(rev) and store.has_commit(repo, rev):
            return rev
        if re.fullmatch(r"[0-9a-f]{7,39}", rev):
            found = [p.stem for p in (store.repo_dir(repo["type"], repo["id"]) / "commits").glob(f"{rev}*.json")]
            if len(found) == 1:
                return found[0]
        raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    # -- reading
    def _info(self, rtype: str, repo_id: str, rev: str | None) -> None:
        repo = self._repo(rtype, repo_id)
        store = self.server.hub._store
        commit = store.commit(repo, self._resolve_rev(repo, rev))
        blobs = self._query.get("blobs", "").lower() in ("1", "true")
        siblings = []
        for path, e in sorted(commit["files"].items()):
            s: dict[str, Any] = {"rfilename": path}
            if blobs:
                s.update(size=e["size"], blobId=e["oid"])
                if e["lfs"]:
                    s["lfs"] = {"sha256": e["sha256"], "size": e["size"],
                                "pointerSize": e["pointer_size"]}
            siblings.append(s)
        ns = repo_id.split("/")[0]
        data = {"_id": hashlib.sha1(f"{rtype}/{repo_id}".encode()).hexdigest()[:24],
                "id": repo_id, "author": ns, "sha": commit["id"], "private": repo["private"],
                "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
                "createdAt": repo["createdAt"], "lastModified": commit["date"],
                "siblings": siblings, "usedStorage": sum(e["size"] for e in commit["files"].values())}
        if rtype == "model":
            data["modelId"] = repo_id
        if rtype == "space":
            data.update(sdk="static", runtime=None)
        self._json(data)

    def _last_commit(self, repo: dict, commit: dict, path: str, is_dir: bool) -> dict:
        store = self.server.hub._store

        def key(c: dict):
            return c["trees"].get(path) if is_dir else (c["files"].get(path) or {}).get("oid")

        current, k = commit, key(commit)
        while current["parents"]:
            parent = store.commit(repo, current["parents"][0])
            if key(parent) != k:
                break
            current = parent
        return {"id": current["id"], "title": current["title"], "date": current["date"]}

    def _entry_json(self, repo: dict, commit: dict, path: str, expand: bool) -> dict:
        if path in commit["files"]:
            e = commit["files"][path]
            out: dict[str, Any] = {"type": "file", "oid": e["oid"], "size": e["size"], "path": path}
            if e["lfs"]:
                out["lfs"] = {"oid": e["sha256"], "size": e["size"], "pointerSize": e["pointer_size"]}
        else:
            out = {"type": "directory", "oid": commit["trees"][path], "size": 0, "path": path}
        if expand:
            out["lastCommit"] = self._last_commit(repo, commit, path, out["type"] == "directory")
        return out

    def _tree(self, rtype: str, repo_id: str, rev: str, path: str) -> None:
        repo = self._repo(rtype, repo_id)
        commit = self.server.hub._store.commit(repo, self._resolve_rev(repo, rev))
        path = path.strip("/")
        if path and path not in commit["trees"]:
            code = "EntryNotFound"
            raise HubError(404, f"Entry not found: {path}" if path not in commit["files"]
                           else f"{path} is a file, not a directory", code)
        recursive = self._query.get("recursive", "").lower() in ("1", "true")
        expand = self._query.get("expand", "").lower() in ("1", "true")
        prefix = f"{path}/" if path else ""
        names = set()
        for p in list(commit["files"]) + [d for d in commit["trees"] if d]:
            if not p.startswith(prefix):
                continue
            rel = p[len(prefix):]
            if recursive:
                names.add(p)
            elif "/" not in rel:
                names.add(p)
        dirs = sorted(n for n in names if n in commit["trees"])
        files = sorted(n for n in names if n in commit["files"])
        ordered = dirs + files if not recursive else sorted(names)
        page = self.server.hub.tree_page_size if not expand else min(50, self.server.hub.tree_page_size)
        cursor = int(self._query.get("cursor") or 0)
        chunk = ordered[cursor:cursor + page]
        headers = {}
        if cursor + page < len(ordered):
            q = urlencode({"recursive": str(recursive).lower(), "expand": str(expand).lower(),
                           "cursor": cursor + page})
            url = f"{self._base()}{urlsplit(self.path).path}?{q}"
            headers["Link"] = f'<{url}>; rel="next"'
        self._json([self._entry_json(repo, commit, p, expand) for p in chunk], headers=headers)

    def _paths_info(self, rtype: str, repo_id: str, rev: str) -> None:
        repo = self._repo(rtype, repo_id)
        commit = self.server.hub._store.commit(repo, self._resolve_rev(repo, rev))
        raw = self._body.read().decode()
        if (self.headers.get("Content-Type") or "").startswith("application/json"):
            payload = json.loads(raw or "{}")
            paths, expand = payload.get("paths") or [], bool(payload.get("expand"))
        else:
            form = parse_qs(raw, keep_blank_values=True)
            paths = form.get("paths", [])
            expand = (form.get("expand") or ["false"])[-1].lower() in ("1", "true")
        out = []
        for p in paths:
            p = p.strip("/")
            if p in commit["files"] or (p and p in commit["trees"]):
                out.append(self._entry_json(repo, commit, p, expand))
        self._json(out)

    def _refs(self, rtype: str, repo_id: str) -> None:
        repo = self._repo(rtype, repo_id)
        include_prs = self._query.get("include_prs", "") not in ("", "0", "false")

        def refs(table: str, prefix: str) -> list[dict]:
            return [{"name": n, "ref": n if table == "prs" else f"{prefix}{n}", "targetCommit": c}
                    for n, c in sorted(repo[table].items()) if c]

        data = {"branches": refs("branches", "refs/heads/"), "tags": refs("tags", "refs/tags/"),
                "converts": []}
        if include_prs:
            data["pullRequests"] = refs("prs", "")
        self._json(data)

    def _commits(self, rtype: str, repo_id: str, rev: str) -> None:
        repo = self._repo(rtype, repo_id)
        store = self.server.hub._store
        oid: str | None = self._resolve_rev(repo, rev)
        out = []
        while oid:
            c = store.commit(repo, oid)
            out.append({"id": c["id"], "title": c["title"], "message": c["message"],
                        "date": c["date"], "authors": [{"user": c["author"]}]})
            oid = c["parents"][0] if c["parents"] else None
        self._json(out)

    def _resolve(self, rtype: str, repo_id: str, rev: str, path: str) -> None:
        repo = self._repo(rtype, repo_id)
        store = self.server.hub._store
        oid = self._resolve_rev(repo, rev)
        commit = store.commit(repo, oid)
        e = commit["files"].get(path)
        if e is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound",
                           headers={"X-Repo-Commit": oid})
        headers = {"X-Repo-Commit": oid, "Accept-Ranges": "bytes",
                   "Content-Disposition": f'inline; filename="{quote(path.rsplit("/", 1)[-1])}"'}
        if e["lfs"]:
            headers.update({"ETag": f'"{e["sha256"]}"', "X-Linked-Etag": f'"{e["sha256"]}"',
                            "X-Linked-Size": str(e["size"])})
        else:
            headers["ETag"] = f'"{e["oid"]}"'
        self._send_file(store.read_entry(e), e["size"], headers)

    def _send_file(self, path: Path, size: int, headers: dict[str, str]) -> None:
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if rng and size > 0:
            m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", rng)
            if not m or (not m.group(1) and not m.group(2)):
                raise HubError(416, f"Invalid range: {rng}", headers={"Content-Range": f"bytes */{size}"})
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:
                start = max(0, size - int(m.group(2)))
            if start >= size or start > end:
                raise HubError(416, f"Range not satisfiable: {rng}",
                               headers={"Content-Range": f"bytes */{size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = max(0, end - start + 1)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "HEAD" or length == 0:
            return
        with open(path, "rb") as f:
            f.seek(start)
            left = length
            while left > 0:
                data = f.read(min(_CHUNK, left))
                if not data:
                    break
                self.wfile.write(data)
                left -= len(data)

    # -- refs
    def _branch(self, rtype: str, repo_id: str, branch: str) -> None:
        repo = self._repo(rtype, repo_id, write=True)
        store = self.server.hub._store
        if self.command == "DELETE":
            with store.lock:
                if branch not in repo["branches"]:
                    raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
                if branch == "main":
                    raise HubError(403, "Cannot delete the default branch")
                del repo["branches"][branch]
                store.save_repo(repo)
            return self._json({})
        payload = json.loads(self._body.read() or b"{}")
        if not re.fullmatch(r"[A-Za-z0-9._/-]+", branch) or branch.startswith("refs/") or ".." in branch:
            raise HubError(400, f"Invalid branch name: {branch}")
        with store.lock:
            if branch in repo["branches"]:
                raise HubError(409, "Reference already exists")
            start = self._resolve_rev(repo, payload.get("startingPoint"))
            repo["branches"][branch] = start
            store.save_repo(repo)
        self._json({})

    def _tag(self, rtype: str, repo_id: str, rev_or_tag: str) -> None:
        repo = self._repo(rtype, repo_id, write=True)
        store = self.server.hub._store
        with store.lock:
            if self.command == "DELETE":
                if rev_or_tag not in repo["tags"]:
                    raise HubError(404, f"Invalid rev id: {rev_or_tag}", "RevisionNotFound")
                del repo["tags"][rev_or_tag]
            else:
                payload = json.loads(self._body.read() or b"{}")
                tag = payload.get("tag") or ""
                if not re.fullmatch(r"[A-Za-z0-9._/-]+", tag) or ".." in tag:
                    raise HubError(400, f"Invalid tag name: {tag!r}")
                if tag in repo["tags"]:
                    raise HubError(409, "Tag already exists")
                repo["tags"][tag] = self._resolve_rev(repo, rev_or_tag)
            store.save_repo(repo)
        self._json({})

    # -- uploads
    def _preupload(self, rtype: str, repo_id: str, rev: str) -> None:
        repo = self._repo(rtype, repo_id, write=True)
        hub, store = self.server.hub, self.server.hub._store
        commit = store.commit(repo, self._resolve_rev(repo, rev))
        payload = json.loads(self._body.read() or b"{}")

        def text_at(path: str) -> str | None:
            e = commit["files"].get(path)
            if e is None or e["lfs"]:
                return None
            return store.blob_path(e["oid"]).read_bytes().decode(errors="replace")

        gitattributes = text_at(".gitattributes")
        gitignore = payload["gitIgnore"] if "gitIgnore" in payload else text_at(".gitignore")
        out = []
        for f in payload.get("files") or []:
            path, size = f["path"], int(f.get("size") or 0)
            sample = base64.b64decode(f.get("sample") or "")
            mode = upload_mode_for(path, size, sample, gitattributes, hub.lfs_patterns, hub.lfs_threshold)
            info: dict[str, Any] = {"path": path, "uploadMode": mode,
                                    "shouldIgnore": _ignored(gitignore, path)}
            e = commit["files"].get(path)
            if e is not None:
                info["oid"] = e["sha256"] if e["lfs"] else e["oid"]
            out.append(info)
        self._json({"files": out, "commitOid": commit["id"]})

    def _lfs_batch(self, rtype: str, repo_id: str) -> None:
        payload = json.loads(self._body.read() or b"{}")
        operation = payload.get("operation")
        if operation not in ("upload", "download"):
            raise HubError(400, f"Invalid LFS operation: {operation!r}")
        repo = self._repo(rtype, repo_id, write=operation == "upload")
        hub, store = self.server.hub, self.server.hub._store
        if payload.get("hash_algo", "sha256") != "sha256":
            raise HubError(409, "Only sha256 is supported")
        transfers = payload.get("transfers") or ["basic"]
        base, exp = self._base(), int(time.time()) + hub.url_ttl
        verify_href = f"{base}/{URL_PREFIX[rtype]}{repo_id}.git/info/lfs/objects/verify"
        used_multipart = False
        objects = []
        for obj in payload.get("objects") or []:
            oid, size = str(obj.get("oid", "")), obj.get("size")
            out: dict[str, Any] = {"oid": oid, "size": size if isinstance(size, int) else -1}
            if not _SHA256_RE.match(oid) or not isinstance(size, int) or size < 0:
                out["error"] = {"code": 422, "message": "Invalid object: oid must be a sha256, size an int"}
            elif operation == "download":
                have = store.lfs_size(oid)
                if have is None:
                    out["error"] = {"code": 404, "message": "Object does not exist"}
                else:
                    out["size"] = have
                    q = hub._signed("download", oid, have, repo["id"], exp)
                    out.update(authenticated=True, actions={"download": {
                        "href": f"{base}/_lfs/download/{oid}?{q}", "expires_in": hub.url_ttl}})
            elif store.lfs_size(oid) == size:
                pass  # already stored: no actions, the client skips the upload
            elif hub.multipart_chunk_size and size > hub.multipart_threshold and "multipart" in transfers:
                used_multipart = True
                upload_id = secrets.token_hex(8)
                cs = hub.multipart_chunk_size
                n = max(1, -(-size // cs))
                q = hub._signed(f"multipart:{upload_id}", oid, size, repo["id"], exp)
                header = {"chunk_size": str(cs)}
                for i in range(1, n + 1):
                    header[str(i)] = f"{base}/_lfs/part/{oid}/{upload_id}/{i}?{q}"
                out.update(authenticated=True, actions={
                    "upload": {"href": f"{base}/_lfs/complete/{oid}/{upload_id}?{q}", "header": header,
                               "expires_in": hub.url_ttl},
                    "verify": {"href": verify_href}})
            else:
                q = hub._signed("upload", oid, size, repo["id"], exp)
                out.update(authenticated=True, actions={
                    "upload": {"href": f"{base}/_lfs/upload/{oid}?{q}", "expires_in": hub.url_ttl},
                    "verify": {"href": verify_href}})
            objects.append(out)
        self._json({"transfer": "multipart" if used_multipart else "basic", "objects": objects,
                    "hash_algo": "sha256"}, content_type="application/vnd.git-lfs+json")

    def _lfs_verify(self, rtype: str, repo_id: str) -> None:
        self._repo(rtype, repo_id, write=True)
        payload = json.loads(self._body.read() or b"{}")
        oid, size = payload.get("oid"), payload.get("size")
        have = self.server.hub._store.lfs_size(oid) if isinstance(oid, str) and _SHA256_RE.match(oid) else None
        if have is None:
            raise HubError(404, f"LFS object {oid} was not uploaded")
        if have != size:
            raise HubError(422, f"LFS object {oid} has {have} bytes, not {size}")
        self._json({"oid": oid, "size": have}, content_type="application/vnd.git-lfs+json")

    def _route_storage(self, segs: list[str]) -> None:
        hub, store = self.server.hub, self.server.hub._store
        m = self.command
        if segs and segs[0] == "upload" and len(segs) == 2 and m == "PUT":
            oid = segs[1]
            size = hub._check_signed(self._query, "upload", oid)
            tmp = store.tmp_dir() / f"{oid}.{secrets.token_hex(6)}"
            self._receive(tmp, oid, size, self._body)
            return self._send(200, headers={"ETag": f'"{oid}"'})
        if segs and segs[0] == "part" and len(segs) == 4 and m == "PUT":
            oid, upload_id, part = segs[1], segs[2], segs[3]
            hub._check_signed(self._query, f"multipart:{upload_id}", oid)
            if not part.isdigit():
                raise HubError(400, "Invalid part number")
            d = store.tmp_dir() / f"mp-{oid}-{upload_id}"
            d.mkdir(parents=True, exist_ok=True)
            md5 = hashlib.md5()
            tmp = d / f".{int(part):05d}.{secrets.token_hex(4)}"
            with open(tmp, "wb") as f:
                for data in self._body:
                    md5.update(data)
                    f.write(data)
            os.replace(tmp, d / f"{int(part):05d}")
            return self._send(200, headers={"ETag": f'"{md5.hexdigest()}"'})
        if segs and segs[0] == "complete" and len(segs) == 3 and m == "POST":
            oid, upload_id = segs[1], segs[2]
            size = hub._check_signed(self._query, f"multipart:{upload_id}", oid)
            payload = json.loads(self._body.read() or b"{}")
            if payload.get("oid") != oid:
                raise HubError(400, "Completion oid does not match the upload")
            d = store.tmp_dir() / f"mp-{oid}-{upload_id}"
            parts = sorted(payload.get("parts") or [], key=lambda p: p.get("partNumber", 0))
            expected = max(1, -(-size // hub.multipart_chunk_size)) if hub.multipart_chunk_size else 0
            if [p.get("partNumber") for p in parts] != list(range(1, expected + 1)):
                raise HubError(400, f"Multipart completion must list parts 1..{expected}")
            files = []
            for p in parts:
                f = d / f"{p['partNumber']:05d}"
                if not f.is_file():
                    raise HubError(400, f"Part {p['partNumber']} was not uploaded")
                etag = hashlib.md5(f.read_bytes()).hexdigest()
                if str(p.get("etag", "")).strip('"') != etag:
                    raise HubError(400, f"ETag mismatch for part {p['partNumber']}")
                files.append(f)

            def stream():
                for f in files:
                    with open(f, "rb") as fh:
                        while data := fh.read(_CHUNK):
                            yield data

            try:
                self._receive(store.tmp_dir() / f"{oid}.{secrets.token_hex(6)}", oid, size, stream())
            finally:
                shutil.rmtree(d, ignore_errors=True)
            return self._json({"oid": oid, "size": size})
        if segs and segs[0] == "download" and len(segs) == 2 and m in ("GET", "HEAD"):
            oid = segs[1]
            size = hub._check_signed(self._query, "download", oid)
            if store.lfs_size(oid) != size:
                raise HubError(404, "Object does not exist")
            return self._send_file(store.lfs_path(oid), size, {"ETag": f'"{oid}"'})
        raise HubError(404, f"Not found: {m} /_lfs/{'/'.join(segs)}")

    def _receive(self, tmp: Path, oid: str, size: int, chunks) -> None:
        """Store bytes as LFS object `oid` if they hash to it and have the announced size."""
        sha, total = hashlib.sha256(), 0
        try:
            with open(tmp, "wb") as f:
                for data in chunks:
                    sha.update(data)
                    total += len(data)
                    f.write(data)
            if total != size:
                raise HubError(400, f"LFS upload rejected: received {total} bytes, {size} announced")
            if sha.hexdigest() != oid:
                raise HubError(400, f"LFS upload rejected: content hashes to sha256 "
                                    f"{sha.hexdigest()}, not the announced oid {oid}")
            self.server.hub._store.put_lfs_file(tmp, oid)
        finally:
            tmp.unlink(missing_ok=True)

    def _commit(self, rtype: str, repo_id: str, rev: str) -> None:
        repo = self._repo(rtype, repo_id, write=True)
        hub, store = self.server.hub, self.server.hub._store
        lines = [json.loads(line) for line in self._body.read().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first line of a commit must be its header")
        header = lines[0].get("value") or {}
        title = (header.get("summary") or "").strip()
        if not title:
            raise HubError(400, "Commit summary is required")
        create_pr = self._query.get("create_pr", "") not in ("", "0", "false")
        with store.lock:
            if rev in repo["branches"] or (rev in repo["prs"] and not create_pr):
                table = "branches" if rev in repo["branches"] else "prs"
            elif rev in repo["tags"] or _OID_RE.match(rev):
                raise HubError(400, f"Cannot commit to {rev}: not a branch")
            else:
                raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            head = repo[table][rev]
            parent_commit = header.get("parentCommit")
            if parent_commit and not (head or "").startswith(parent_commit):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(store.commit(repo, head)["files"]) if head else {}
            for op in lines[1:]:
                self._apply(op, files)
            dirs = {p.rsplit("/", i)[0] for p in files for i in range(1, p.count("/") + 1)}
            clash = sorted(dirs & files.keys())
            if clash:  # a file and a folder cannot share a path
                raise HubError(400, f"{clash[0]} would be both a file and a folder")
            if create_pr:
                pr_num = len(repo["prs"]) + 1
                table, rev = "prs", f"refs/pr/{pr_num}"
            c = store.new_commit(repo, head, files, title, header.get("description") or "", hub.username)
            repo[table][rev] = c["id"]
            store.save_repo(repo)
        base = f"{self._base()}/{URL_PREFIX[rtype]}{repo_id}"
        out = {"success": True, "commitOid": c["id"], "commitUrl": f"{base}/commit/{c['id']}",
               "hookOutput": ""}
        if create_pr:
            out["pullRequestUrl"] = f"{base}/discussions/{rev.rsplit('/', 1)[-1]}"
        self._json(out)

    def _apply(self, op: dict, files: dict[str, dict]) -> None:
        store = self.server.hub._store
        key, value = op.get("key"), op.get("value") or {}
        path = str(value.get("path") or "").lstrip("/")
        parts = path.split("/")
        if not path or any(p in ("", ".", "..") for p in parts) or parts[0] == ".git":
            raise HubError(400, f"Invalid path in commit: {path!r}")
        if key == "file":
            if value.get("encoding", "base64") != "base64":
                raise HubError(400, f"Unsupported encoding: {value.get('encoding')}")
            data = base64.b64decode(value.get("content") or "")
            files[path] = _regular_entry(data, store.put_blob(data))
        elif key == "lfsFile":
            oid, size = value.get("oid"), value.get("size")
            if value.get("algo", "sha256") != "sha256" or not isinstance(oid, str) or not _SHA256_RE.match(oid):
                raise HubError(400, f"Invalid LFS pointer for {path}")
            have = store.lfs_size(oid)
            if have is None:
                raise HubError(422, f"LFS object {oid} for {path} was never uploaded")
            if size is not None and size != have:
                raise HubError(422, f"LFS object {oid} for {path} has {have} bytes, not {size}")
            pointer = lfs_pointer(oid, have)
            files[path] = {"size": have, "oid": git_blob_oid(pointer), "sha256": oid, "lfs": True,
                           "pointer_size": len(pointer)}
        elif key == "deletedFile":
            if path not in files:
                raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            del files[path]
        elif key == "deletedFolder":
            prefix = path.rstrip("/") + "/"
            gone = [p for p in files if p.startswith(prefix)]
            if not gone:
                raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
            for p in gone:
                del files[p]
        else:
            raise HubError(400, f"Unknown commit operation: {key!r}")


def _regular_entry(data: bytes, oid: str) -> dict:
    return {"size": len(data), "oid": oid, "sha256": hashlib.sha256(data).hexdigest(),
            "lfs": False, "pointer_size": None}


def _conflict(url: str, rtype: str) -> HubError:
    # the client reads "url" from the 409 body when create_repo(exist_ok=True)
    return HubError(409, f"You already created this {rtype} repo", body={"url": url})


# ---------------------------------------------------------------------------- LocalHub


class LocalHub:
    """A Hub-compatible server over a directory. See the module docstring."""

    def __init__(self, root_dir: str | os.PathLike, token: str = "hf_test_token", port: int = 0,
                 *, host: str = "127.0.0.1", read_tokens=(), allow_anonymous_read: bool = False,
                 username: str = "localuser", lfs_threshold: int = LFS_THRESHOLD,
                 lfs_patterns=EXTRA_LFS_PATTERNS, multipart_threshold: int = 64 * 1024 * 1024,
                 multipart_chunk_size: int | None = 16 * 1024 * 1024, tree_page_size: int = 1000,
                 init_gitattributes: bool = True, patch_client_xet: bool = True,
                 url_ttl: int = 3600, verbose: bool = False):
        self.root = Path(root_dir)
        self.token = token
        self.read_tokens = set(read_tokens)
        self.allow_anonymous_read = allow_anonymous_read
        self.username = username
        self.lfs_threshold = lfs_threshold
        self.lfs_patterns = tuple(lfs_patterns)
        self.multipart_threshold = multipart_threshold
        self.multipart_chunk_size = multipart_chunk_size
        self.tree_page_size = tree_page_size
        self.init_gitattributes = init_gitattributes
        self.patch_client_xet = patch_client_xet
        self.url_ttl = url_ttl
        self.verbose = verbose
        self.host, self.port = host, port
        self.requests: list[RequestRecord] = []
        self._store = _Store(self.root)
        self._faults: list[dict] = []
        self._lock = threading.Lock()
        self._secret = secrets.token_bytes(32)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._xet_patched = False

    # -- lifecycle
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("LocalHub is not started")
        return f"http://{self._host_port}"

    @property
    def _host_port(self) -> str:
        host = self.host if self.host not in ("0.0.0.0", "") else "127.0.0.1"
        return f"{host}:{self.port}"

    def start(self) -> str:
        if self._server is not None:
            return self.url
        server = _Server((self.host, self.port), _Handler)
        server.hub = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"localhub:{self.port}", daemon=True)
        self._thread.start()
        if self.patch_client_xet and not self._xet_patched:
            disable_xet_in_client()
            self._xet_patched = True
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.close_connections()
            self._thread.join(timeout=5)
            self._server = self._thread = None
        if self._xet_patched:
            _restore_xet_in_client()
            self._xet_patched = False

    def __enter__(self) -> "LocalHub":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- fault injection and request log
    def fail_next(self, n: int = 1, status: int = 503, path_contains: str | None = None,
                  method: str | None = None, retry_after: int | None = None) -> None:
        """Answer the next `n` requests matching (path substring, method) with `status`.

        429 answers carry ``Retry-After`` (default 1 s; other statuses only when
        `retry_after` is given). Rules are matched in the order they were added.
        """
        if retry_after is None and status == 429:
            retry_after = 1
        with self._lock:
            self._faults.append({"n": n, "status": status, "path": path_contains,
                                 "method": method.upper() if method else None,
                                 "retry_after": retry_after})

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, method: str, path: str) -> HubError | None:
        with self._lock:
            for rule in self._faults:
                if rule["n"] > 0 and (rule["path"] is None or rule["path"] in unquote(path)
                                      or rule["path"] in path) \
                        and (rule["method"] is None or rule["method"] == method):
                    rule["n"] -= 1
                    if rule["n"] == 0:
                        self._faults.remove(rule)
                    headers = {}
                    if rule["retry_after"] is not None:
                        headers["Retry-After"] = str(rule["retry_after"])
                    return HubError(rule["status"], f"Injected failure ({rule['status']})",
                                    headers=headers)
        return None

    def _log(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests.append(RequestRecord(method, path, status))

    # -- pre-signed storage URLs
    def _sig(self, kind: str, oid: str, size: int, repo: str, exp: int) -> str:
        msg = f"{kind}|{oid}|{size}|{repo}|{exp}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def _signed(self, kind: str, oid: str, size: int, repo: str, exp: int) -> str:
        return urlencode({"size": size, "repo": repo, "exp": exp,
                          "sig": self._sig(kind, oid, size, repo, exp)})

    def _check_signed(self, query: dict[str, str], kind: str, oid: str) -> int:
        try:
            size, exp, repo = int(query["size"]), int(query["exp"]), query["repo"]
        except (KeyError, ValueError):
            raise HubError(403, "Missing or malformed signature") from None
        if not hmac.compare_digest(self._sig(kind, oid, size, repo, exp), query.get("sig", "")):
            raise HubError(403, "Invalid signature")
        if exp < time.time():
            raise HubError(403, "Signed URL expired")
        return size

    # -- inspection (for tests and tools)
    def _get_repo(self, repo_id: str, repo_type: str) -> dict:
        repo = self._store.repos.get((repo_type or "model", repo_id))
        if repo is None:
            raise KeyError(f"no {repo_type} repo {repo_id}")
        return repo

    def repo_exists(self, repo_id: str, repo_type: str = "model") -> bool:
        return (repo_type or "model", repo_id) in self._store.repos

    def branches(self, repo_id: str, repo_type: str = "model") -> dict[str, str]:
        return dict(self._get_repo(repo_id, repo_type)["branches"])

    def commits(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> list[dict]:
        """Commits reachable from `revision`, newest first: {id, parents, title, message, date, files}."""
        repo = self._get_repo(repo_id, repo_type)
        with self._store.lock:
            oid = repo["branches"].get(revision) or repo["tags"].get(revision) or \
                repo["prs"].get(revision) or revision
            out = []
            while oid:
                c = self._store.commit(repo, oid)
                out.append({k: c[k] for k in ("id", "parents", "title", "message", "date", "files")})
                oid = c["parents"][0] if c["parents"] else None
        return out

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, dict]:
        """path -> {size, oid, sha256, lfs, pointer_size} at `revision`."""
        return self.commits(repo_id, repo_type, revision)[0]["files"]

    def read_file(self, repo_id: str, path: str, repo_type: str = "model", revision: str = "main") -> bytes:
        return self._store.read_entry(self.files(repo_id, repo_type, revision)[path]).read_bytes()

    def lfs_object_path(self, sha256: str) -> Path | None:
        p = self._store.lfs_path(sha256)
        return p if p.is_file() else None


# --------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m robocurate.hub.localhub",
                                 description="Serve a local Hugging Face Hub-compatible API over a directory.")
    ap.add_argument("--root", required=True, help="directory that holds the repositories")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8999)
    ap.add_argument("--token", default=os.environ.get("LOCALHUB_TOKEN", "hf_test_token"),
                    help="write token (default: $LOCALHUB_TOKEN or hf_test_token)")
    ap.add_argument("--read-token", action="append", default=[], help="a read-only token (repeatable)")
    ap.add_argument("--allow-anonymous-read", action="store_true")
    ap.add_argument("--username", default="localuser")
    ap.add_argument("--verbose", action="store_true", help="log every request")
    args = ap.parse_args(argv)
    hub = LocalHub(args.root, token=args.token, port=args.port, host=args.host,
                   read_tokens=args.read_token, allow_anonymous_read=args.allow_anonymous_read,
                   username=args.username, verbose=args.verbose, patch_client_xet=False)
    url = hub.start()
    print(f"LocalHub serving {Path(args.root).resolve()} at {url}", flush=True)
    print(f"  clients: HF_ENDPOINT={url} HF_TOKEN=<token> HF_HUB_DISABLE_XET=1", flush=True)
    stop = threading.Event()
    try:
        import signal
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    except (ValueError, OSError):
        pass
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
