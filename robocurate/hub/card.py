"""Dataset cards: README.md with YAML metadata and a generated "At a glance" section.

Refreshing a card rewrites only what robocurate owns: the metadata keys it is given and
the text between its two markers. Everything else the user wrote stays as it was.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from robocurate.io.atomic import atomic_write_bytes

BEGIN = "<!-- robocurate:at-a-glance:begin -->"
END = "<!-- robocurate:at-a-glance:end -->"
_FRONT = re.compile(r"\A---\s*\n(.*?)\n---\s*\n?", re.S)


def _glance(counters: dict) -> str:
    rows = "\n".join(f"| {k} | {v:,} |" if isinstance(v, int) else f"| {k} | {v} |"
                     for k, v in counters.items())
    return f"{BEGIN}\n## At a glance\n\n| | |\n|---|---|\n{rows}\n{END}"


def write_card(folder: str | Path, *, title: str, counters: dict, license: str | None = None,
               task_categories: list[str] | None = None, tags: list[str] | None = None,
               configs: list[dict] | None = None, extra: dict | None = None) -> Path:
    path = Path(folder) / "README.md"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    meta, body = {}, text
    m = _FRONT.match(text)
    if m:
        meta = yaml.safe_load(m.group(1)) or {}
        body = text[m.end():]
    for key, value in (("license", license), ("task_categories", task_categories),
                       ("tags", tags), ("configs", configs)):
        if value is not None:
            meta[key] = value
    meta.update(extra or {})
    section = _glance(counters)
    if BEGIN in body and END in body:
        start, end = body.index(BEGIN), body.index(END) + len(END)
        body = body[:start] + section + body[end:]
    elif body.strip():
        lines = body.split("\n")
        # After the first heading, if the user has one; else at the top.
        at = next((i + 1 for i, line in enumerate(lines) if line.startswith("# ")), 0)
        body = "\n".join(lines[:at] + ["", section, ""] + lines[at:])
    else:
        body = f"# {title}\n\n{section}\n"
    out = "---\n" + yaml.safe_dump(meta, sort_keys=False).strip() + "\n---\n" + body
    atomic_write_bytes(path, out.encode("utf-8"))
    return path
