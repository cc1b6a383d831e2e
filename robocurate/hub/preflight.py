"""Preflight checks run before anything is published: named checks per data family.

Each check returns a CheckResult; any failure stops the publish flow before a byte is
sent. ``generic`` checks run for every family; pipelines add their own with ``register``.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

# The Hub refuses files above 50 GB (LFS); the recommended maximum per file is lower, but
# the hard limit is what makes an upload fail.
HUB_MAX_FILE_BYTES = 50 * 1000**3

SECRET_NAMES = (".env", ".env.*", "*.pem", "*.key", "id_rsa", "id_rsa*", "id_ed25519*",
                ".netrc", ".git-credentials", "credentials.json", "*.p12", "token", ".huggingface")
SECRET_PATTERNS = [
    re.compile(rb"hf_[A-Za-z0-9]{30,}"),                      # Hugging Face tokens
    re.compile(rb"AKIA[0-9A-Z]{16}"),                          # AWS access keys
    re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(rb"ghp_[A-Za-z0-9]{36}"),                       # GitHub tokens
]
SCAN_BYTES = 1 << 20  # secrets hide in small text files; large binaries are not scanned


@dataclass
class CheckResult:
    name: str
    passed: bool
    reason: str
    paths: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


Check = Callable[[Path, list[Path]], CheckResult]
_REGISTRY: dict[str, list[tuple[str, Check]]] = {}


def register(kind: str, name: str):
    """Decorator adding a check to a family (``generic`` checks run for every family)."""

    def decorate(fn: Check) -> Check:
        _REGISTRY.setdefault(kind, []).append((name, fn))
        return fn

    return decorate


def kinds() -> list[str]:
    return sorted(_REGISTRY)


def selected_files(folder: Path, include=(), exclude=()) -> list[Path]:
    """Files under ``folder`` that a push would send (relative globs), sorted."""
    out = []
    for p in sorted(folder.rglob("*")):
        if p.is_dir() and not p.is_symlink():
            continue
        rel = p.relative_to(folder).as_posix()
        if rel.startswith(".cache/") or "/.cache/" in rel or rel.startswith(".git/"):
            continue
        if include and not any(fnmatch.fnmatch(rel, g) for g in include):
            continue
        if any(fnmatch.fnmatch(rel, g) for g in exclude):
            continue
        out.append(p)
    return out


def run_preflight(folder: str | Path, kind: str = "generic", include=(), exclude=()) -> list[dict]:
    """Every check of ``generic`` plus the family's; results as dicts (never raises for data)."""
    folder = Path(folder)
    if kind not in _REGISTRY:
        _load_family_checks()
    if kind not in _REGISTRY:
        raise ValueError(f"unknown preflight kind {kind!r}; known: {', '.join(kinds())}")
    if not folder.is_dir():
        return [CheckResult("folder", False, f"{folder} is not a directory", [str(folder)]).to_dict()]
    files = selected_files(folder, include, exclude)
    checks = list(_REGISTRY["generic"]) + (list(_REGISTRY[kind]) if kind != "generic" else [])
    results = []
    for name, fn in checks:
        try:
            results.append(fn(folder, files))
        except Exception as exc:  # a check that crashes is a failed check, with its reason
            results.append(CheckResult(name, False, f"check crashed: {type(exc).__name__}: {exc}"))
    return [r.to_dict() for r in results]


def _load_family_checks() -> None:
    """Families register their checks in their own modules; import them lazily."""
    import importlib

    for module in ("robocurate.molmo.preflight", "robocurate.demos.preflight",
                   "robocurate.react.preflight", "robocurate.owa.preflight"):
        try:
            importlib.import_module(module)
        except ImportError:
            pass


# ---------------------------------------------------------------- generic checks
@register("generic", "folder_not_empty")
def _not_empty(folder: Path, files: list[Path]) -> CheckResult:
    if not files:
        return CheckResult("folder_not_empty", False, f"nothing to publish in {folder}")
    return CheckResult("folder_not_empty", True, f"{len(files)} files")


@register("generic", "links_inside_folder")
def _links(folder: Path, files: list[Path]) -> CheckResult:
    root = folder.resolve()
    broken, escaping = [], []
    for p in files:
        if p.is_symlink():
            target = Path(os.path.realpath(p))
            if not target.exists():
                broken.append(str(p))
            elif root not in target.parents and target != root:
                escaping.append(str(p))
    bad = broken + escaping
    reason = (f"{len(broken)} broken symlinks, {len(escaping)} pointing outside the folder"
              if bad else "no broken or escaping symlinks")
    return CheckResult("links_inside_folder", not bad, reason, bad)


@register("generic", "file_size_limit")
def _sizes(folder: Path, files: list[Path]) -> CheckResult:
    big = [str(p) for p in files if p.exists() and p.stat().st_size > HUB_MAX_FILE_BYTES]
    return CheckResult("file_size_limit", not big,
                       f"{len(big)} files above the Hub's {HUB_MAX_FILE_BYTES // 1000**3} GB limit"
                       if big else "every file within the Hub's per-file limit", big)


_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", re.S)


@register("generic", "dataset_card")
def _card(folder: Path, files: list[Path]) -> CheckResult:
    card = folder / "README.md"
    if not card.is_file():
        return CheckResult("dataset_card", False, "no README.md dataset card", [str(card)])
    m = _FRONT_MATTER.match(card.read_text(encoding="utf-8", errors="replace"))
    if not m:
        return CheckResult("dataset_card", False, "README.md has no YAML front matter", [str(card)])
    import yaml

    try:
        meta = yaml.safe_load(m.group(1))
    except yaml.YAMLError as exc:
        return CheckResult("dataset_card", False, f"YAML front matter is invalid: {exc}",
                           [str(card)])
    if not isinstance(meta, dict):
        return CheckResult("dataset_card", False, "YAML front matter is not a mapping", [str(card)])
    return CheckResult("dataset_card", True, f"card metadata: {', '.join(sorted(meta))}")


@register("generic", "no_secrets")
def _secrets(folder: Path, files: list[Path]) -> CheckResult:
    flagged = []
    for p in files:
        rel = p.relative_to(folder).as_posix()
        if any(fnmatch.fnmatch(p.name, g) for g in SECRET_NAMES):
            flagged.append(rel)
            continue
        try:
            if p.stat().st_size <= SCAN_BYTES:
                data = p.read_bytes()
                if any(rx.search(data) for rx in SECRET_PATTERNS):
                    flagged.append(rel)
        except OSError:
            continue
    # Only the paths are reported: echoing a found secret would leak it.
    return CheckResult("no_secrets", not flagged,
                       f"{len(flagged)} files look like secrets or contain credentials"
                       if flagged else "no secret-looking files", flagged)
