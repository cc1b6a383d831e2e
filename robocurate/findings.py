"""Findings: data problems reported with their location, never raised as crashes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Finding:
    """One problem in one place: a file, optionally an item inside it (a trajectory)."""

    path: str
    rule: str
    message: str
    item: str | None = None
    severity: Severity = "error"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Finding":
        return cls(**d)

    def __str__(self) -> str:
        where = f"{self.path}:{self.item}" if self.item else self.path
        return f"[{self.severity}] {where}: {self.rule}: {self.message}"


@dataclass
class Findings:
    """An ordered collection a step fills as it goes; returned inside manifests."""

    items: list[Finding] = field(default_factory=list)

    def add(self, path, rule: str, message: str, *, item: str | None = None,
            severity: Severity = "error") -> Finding:
        finding = Finding(str(path), rule, message, item, severity)
        self.items.append(finding)
        return finding

    def extend(self, other: "Findings | list[Finding]") -> None:
        self.items.extend(other.items if isinstance(other, Findings) else other)

    def to_list(self) -> list[dict[str, Any]]:
        return [f.to_dict() for f in self.items]

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)
