"""Finding and ordering DROID raw episodes.

Layout: ``RAW_ROOT/<LAB>/{success|failure}/<YYYY-MM-DD>/<timestamp folder>/`` holding
``metadata_<uuid>.json``, ``trajectory.h5`` and ``recordings/``. Timestamp folders come
from ``time.asctime().replace(" ", "_")`` (``Mon_May_15_22:22:44_2023``; single-digit days
give a double underscore, ``Sun_Oct__8_...``), and some use ``_`` instead of ``:`` in the
time (``Tue_Mar__7_16_19_59_2023``): both spellings are accepted.

Order (as the original ``get_episodes_by_quality.py``): each episode gets a calibration
quality score ``10 x (digit-only camera keys) + 1 x (those whose value is a 6-vector)``,
from its entry in the superset calibration file when one is given, else from the
metadata's ``{wrist,ext1,ext2}_cam_serial`` / ``*_cam_extrinsics`` pairs. Episodes are
sorted by score, descending, within each lab (ties: by relative path), then labs
(alphabetical) are interleaved round-robin, and ``limit`` takes the first N.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from robocurate.findings import Findings

OUTCOMES = ("success", "failure")
_FOLDER = re.compile(
    r"^(?P<wd>[A-Z][a-z]{2})_(?P<mon>[A-Z][a-z]{2})_{1,2}(?P<day>\d{1,2})_"
    r"(?P<H>\d{2})[:_](?P<M>\d{2})[:_](?P<S>\d{2})_(?P<Y>\d{4})$")
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_timestamp_folder(name: str) -> dt.datetime | None:
    m = _FOLDER.match(name)
    if not m or m["mon"] not in _MONTHS:
        return None
    try:
        return dt.datetime(int(m["Y"]), _MONTHS[m["mon"]], int(m["day"]), int(m["H"]),
                           int(m["M"]), int(m["S"]))
    except ValueError:
        return None


def droid_timestamp(when: dt.datetime) -> str:
    """DROID's uuid timestamp, ``%Y-%m-%d-%Hh-%Mm-%Ss``."""
    return when.strftime("%Y-%m-%d-%Hh-%Mm-%Ss")


@dataclass
class Episode:
    path: Path
    lab: str
    outcome: str
    date: str
    folder: str
    metadata_path: Path | None = None
    metadata: dict | None = None
    score: int = 0
    superset_key: str | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)  # (rule, message)

    @property
    def rel(self) -> str:
        return f"{self.lab}/{self.outcome}/{self.date}/{self.folder}"

    @property
    def timestamp(self) -> str:
        ts = (self.metadata or {}).get("timestamp")
        if isinstance(ts, str) and ts:
            return ts
        when = parse_timestamp_folder(self.folder)
        return droid_timestamp(when) if when else self.folder

    @property
    def episode_id(self) -> str:
        uuid = (self.metadata or {}).get("uuid")
        if isinstance(uuid, str) and uuid:
            return uuid
        return f"{self.lab}+unknown+{self.timestamp}"

    def to_dict(self) -> dict:
        return {"path": str(self.path), "rel": self.rel, "lab": self.lab,
                "outcome": self.outcome, "date": self.date, "folder": self.folder,
                "metadata_path": str(self.metadata_path) if self.metadata_path else None,
                "metadata": self.metadata, "score": self.score,
                "superset_key": self.superset_key, "problems": [list(p) for p in self.problems]}

    @classmethod
    def from_dict(cls, d: dict) -> "Episode":
        return cls(Path(d["path"]), d["lab"], d["outcome"], d["date"], d["folder"],
                   Path(d["metadata_path"]) if d.get("metadata_path") else None,
                   d.get("metadata"), d.get("score", 0), d.get("superset_key"),
                   [tuple(p) for p in d.get("problems", [])])


def read_metadata(folder: Path) -> tuple[Path | None, dict | None, str | None]:
    """(path, parsed JSON, problem) of the episode's metadata_*.json."""
    files = sorted(folder.glob("metadata_*.json"))
    if not files:
        return None, None, "no metadata_*.json"
    try:
        meta = json.loads(files[0].read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return files[0], None, f"{files[0].name} is not readable JSON: {exc}"
    if not isinstance(meta, dict):
        return files[0], None, f"{files[0].name} is not a JSON object"
    return files[0], meta, None


def metadata_score(meta: dict | None) -> int:
    score = 0
    for role in ("wrist", "ext1", "ext2"):
        serial = str((meta or {}).get(f"{role}_cam_serial") or "")
        if serial.isdigit():
            ext = (meta or {}).get(f"{role}_cam_extrinsics")
            score += 10 + (1 if isinstance(ext, list) and len(ext) == 6 else 0)
    return score


def superset_score(entry: dict | None) -> int:
    if not isinstance(entry, dict):
        return 0
    digit = [k for k in entry if str(k).isdigit()]
    return 10 * len(digit) + sum(1 for k in digit
                                 if isinstance(entry[k], list) and len(entry[k]) == 6)


class SupersetIndex:
    """Matches episodes to superset keys as the original: the key ends with the episode's
    ``{date}-{H}h-{M}m-{S}s``; fallback: same date and seconds (same lab preferred)."""

    def __init__(self, superset: dict):
        self.superset = superset
        self._by_ts: dict[str, list[str]] = {}
        self._by_date_s: dict[tuple[str, str], list[str]] = {}
        for k in superset:
            m = re.search(r"(\d{4}-\d{2}-\d{2})-(\d{1,2})h-(\d{1,2})m-(\d{1,2})s$", str(k))
            if not m:
                continue
            self._by_ts.setdefault(m.group(0), []).append(k)
            self._by_date_s.setdefault((m.group(1), m.group(4).zfill(2)), []).append(k)

    @classmethod
    def load(cls, path: str | Path) -> "SupersetIndex":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"superset calibration file {path} is not readable JSON: {exc}") \
                from None
        if not isinstance(data, dict):
            raise ValueError(f"superset calibration file {path} must be a JSON object")
        return cls(data)

    def match(self, ep: Episode) -> str | None:
        uuid = (ep.metadata or {}).get("uuid")
        if uuid in self.superset:
            return uuid
        ts = ep.timestamp
        cands = self._by_ts.get(ts, [])
        if not cands:
            m = re.match(r"(\d{4}-\d{2}-\d{2})-\d{1,2}h-\d{1,2}m-(\d{1,2})s$", ts)
            cands = self._by_date_s.get((m.group(1), m.group(2).zfill(2)), []) if m else []
        same_lab = [k for k in cands if str(k).startswith(f"{ep.lab}+")]
        pick = same_lab or cands
        return pick[0] if pick else None


def discover_episodes(raw_root: str | Path, superset: SupersetIndex | None = None
                      ) -> tuple[list[Episode], Findings]:
    """Every episode folder under RAW_ROOT (unordered) and findings for odd folders."""
    root = Path(raw_root)
    findings = Findings()
    episodes: list[Episode] = []
    if not root.is_dir():
        raise NotADirectoryError(f"DROID raw root {root} is not a directory")
    for lab_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for outcome in OUTCOMES:
            out_dir = lab_dir / outcome
            if not out_dir.is_dir():
                continue
            for date_dir in sorted(p for p in out_dir.iterdir() if p.is_dir()):
                if not _DATE.match(date_dir.name):
                    findings.add(date_dir, "unexpected_folder", "not a YYYY-MM-DD date folder",
                                 severity="warning")
                    continue
                for ep_dir in sorted(p for p in date_dir.iterdir() if p.is_dir()):
                    if parse_timestamp_folder(ep_dir.name) is None:
                        findings.add(ep_dir, "unexpected_folder",
                                     "not a DROID timestamp folder (Day_Mon_DD_HH:MM:SS_YYYY)",
                                     severity="warning")
                        continue
                    ep = Episode(ep_dir, lab_dir.name, outcome, date_dir.name, ep_dir.name)
                    ep.metadata_path, ep.metadata, problem = read_metadata(ep_dir)
                    if problem:
                        ep.problems.append(("bad_metadata", problem))
                    if superset is not None:
                        ep.superset_key = superset.match(ep)
                        ep.score = superset_score(superset.superset.get(ep.superset_key))
                    else:
                        ep.score = metadata_score(ep.metadata)
                    episodes.append(ep)
    return episodes, findings


def order_episodes(episodes: list[Episode], limit: int = -1) -> list[Episode]:
    """Score-descending within each lab, labs interleaved alphabetically, first ``limit``."""
    by_lab: dict[str, list[Episode]] = {}
    for ep in episodes:
        by_lab.setdefault(ep.lab, []).append(ep)
    queues = [sorted(by_lab[lab], key=lambda e: (-e.score, e.rel)) for lab in sorted(by_lab)]
    out: list[Episode] = []
    for i in range(max((len(q) for q in queues), default=0)):
        out += [q[i] for q in queues if i < len(q)]
    return out if limit is None or limit < 0 else out[:limit]
