"""Shared building blocks of the sample generators: seeded randomness, smooth motion."""

from __future__ import annotations

import numpy as np


def seeded_rng(seed: int, *keys: int) -> np.random.Generator:
    """An independent, reproducible stream per (seed, keys...): adding a file or a trajectory
    does not change the random numbers of the others."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF,
                                                         *(int(k) for k in keys)]))


def smoothstep(s):
    """Quintic 0->1 ramp with zero velocity and acceleration at both ends (minimum jerk)."""
    s = np.clip(s, 0.0, 1.0)
    return s * s * s * (10.0 - 15.0 * s + 6.0 * s * s)


def min_jerk_path(way: np.ndarray, times: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Positions at times ``t`` moving through waypoints ``way`` reached at ``times``."""
    seg = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2)
    span = np.maximum(times[seg + 1] - times[seg], 1e-9)
    s = smoothstep((t - times[seg]) / span)[:, None]
    return way[seg] + s * (way[seg + 1] - way[seg])
