"""Mergeable per-dimension statistics in float64 (Chan et al.'s parallel algorithm).

Partial results from trajectories, files and worker processes merge exactly: the
merged mean/std equal numpy's over the concatenated data to ~1e-12 relative, also for
signals with a large offset, where the naive sum/sum_sq route (the original tool's)
cancels catastrophically. ``sum`` and ``sum_sq`` are still carried because the
MolmoSpaces aggregate format reports them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RunningStats:
    count: int
    mean: np.ndarray
    m2: np.ndarray  # sum of squared deviations from the mean
    min: np.ndarray
    max: np.ndarray
    sum: np.ndarray
    sum_sq: np.ndarray

    @classmethod
    def from_array(cls, values) -> "RunningStats":
        """Statistics of an (n, D) array over axis 0 (n >= 1)."""
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[0] == 0:
            raise ValueError(f"need a non-empty (n, D) array, got shape {arr.shape}")
        # Merges combine differences of partial means, so a mean's rounding error enters
        # the merged variance at first order: one correction pass removes it.
        mean = arr.mean(axis=0)
        mean += (arr - mean).mean(axis=0)
        dev = arr - mean
        return cls(
            count=int(arr.shape[0]),
            mean=mean,
            m2=np.einsum("ij,ij->j", dev, dev),
            min=arr.min(axis=0),
            max=arr.max(axis=0),
            sum=arr.sum(axis=0),
            sum_sq=np.einsum("ij,ij->j", arr, arr),
        )

    @property
    def var(self) -> np.ndarray:
        return self.m2 / self.count

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var)

    def merge(self, other: "RunningStats") -> "RunningStats":
        if self.mean.shape != other.mean.shape:
            raise ValueError(
                f"cannot merge statistics of width {self.mean.shape} and {other.mean.shape}")
        n = self.count + other.count
        delta = other.mean - self.mean
        return RunningStats(
            count=n,
            mean=self.mean + delta * (other.count / n),
            m2=self.m2 + other.m2 + delta * delta * (self.count * other.count / n),
            min=np.minimum(self.min, other.min),
            max=np.maximum(self.max, other.max),
            sum=self.sum + other.sum,
            sum_sq=self.sum_sq + other.sum_sq,
        )

    def summary(self) -> dict:
        """The MolmoSpaces statistics record (population std, ddof=0)."""
        return {
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "min": self.min.tolist(),
            "max": self.max.tolist(),
            "count": self.count,
            "sum": self.sum.tolist(),
            "sum_sq": self.sum_sq.tolist(),
        }

    def to_state(self) -> dict:
        """Exact, JSON-safe state for passing partials between processes and tasks."""
        return {"count": self.count, **{k: getattr(self, k).tolist()
                                        for k in ("mean", "m2", "min", "max", "sum", "sum_sq")}}

    @classmethod
    def from_state(cls, state: dict) -> "RunningStats":
        width = len(state["mean"])
        return cls(count=int(state["count"]), **{
            k: np.asarray(state[k], dtype=np.float64).reshape(width)
            for k in ("mean", "m2", "min", "max", "sum", "sum_sq")})


def merge_all(parts) -> RunningStats | None:
    """Merge an iterable of RunningStats pairwise-tree style (better rounding than a chain)."""
    items = [p for p in parts if p is not None]
    if not items:
        return None
    while len(items) > 1:
        items = [items[i].merge(items[i + 1]) if i + 1 < len(items) else items[i]
                 for i in range(0, len(items), 2)]
    return items[0]


def merge_keyed(maps) -> dict[str, RunningStats]:
    """Merge dicts of key -> RunningStats; keys missing from some maps are fine."""
    grouped: dict[str, list[RunningStats]] = {}
    for m in maps:
        for key, st in m.items():
            grouped.setdefault(key, []).append(st)
    return {k: merge_all(v) for k, v in grouped.items()}
