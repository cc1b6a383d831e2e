"""Demo augmentation from the seed (noise, time reversal), as pure functions.

A *demo dict* here is::

    {"observations": {key: (T, ...) array, or a nested dict of them},
     "actions": (N, A) array,
     "success": bool,
     # optional, as read by read_demo: "rewards", "dones", "states" ((N, ...) arrays), "key"}

with N == T (robomimic) or N == T - 1 (seed). Observations are *stacked arrays per key*,
not the seed's list of per-step dicts: a per-step list costs a Python object per step
and cannot be sliced or reversed as a whole. Passing the list form raises TypeError.

Nothing here writes: :func:`read_demo` only reads, and every function returns new
arrays (the input demo is never modified), so augmenting can never damage a source
file. Writing the results is :class:`robocurate.demos.writer.DemoWriter`'s job.

Pure library: no Prefect.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from robocurate.demos.layout import detect_schema

__all__ = ["add_noise", "augment_demonstration", "read_demo", "time_reverse"]

DEFAULT_NOISE_KEYS = ("robot_joint_pos", "object_pos")


def add_noise(
    demo: Mapping[str, Any],
    obs_keys: Sequence[str] = DEFAULT_NOISE_KEYS,
    obs_sigma: float = 0.01,
    action_sigma: float = 0.05,
    clip: tuple[float, float] | None = (-1.0, 1.0),
    rng: np.random.Generator | int | None = None,
) -> dict:
    """A deep copy of ``demo`` with Gaussian noise on some observations and on the actions.

    ``obs_keys`` name observation entries (``"a/b"`` reaches into nested dicts); absent
    keys are skipped, as in the seed. Only floating-point arrays get noise (noise on
    integer or uint8 image data would be quantised away or wrap). Noisy actions are
    clipped to ``clip`` (None: not clipped); dtypes are kept.
    """
    _check_demo(demo)
    rng = _rng(rng)
    out = copy.deepcopy(dict(demo))
    obs = out["observations"]
    for key in obs_keys:
        parent, name = _lookup_parent(obs, key)
        if parent is None:
            continue
        arr = np.asarray(parent[name])
        if arr.dtype.kind != "f":
            continue
        parent[name] = (arr + rng.normal(0.0, obs_sigma, arr.shape)).astype(arr.dtype, copy=False)
    actions = np.asarray(out["actions"])
    if actions.dtype.kind == "f" and actions.size:
        noisy = actions + rng.normal(0.0, action_sigma, actions.shape)
        if clip is not None:
            noisy = np.clip(noisy, clip[0], clip[1])
        out["actions"] = noisy.astype(actions.dtype, copy=False)
    return out


def time_reverse(demo: Mapping[str, Any]) -> dict:
    """The seed's time reversal: observations reversed, actions reversed and negated.

    Returns only ``observations``, ``actions`` and ``success`` (kept), like the seed:
    reversed rewards/dones describe no real episode. Negation is the inverse only of
    delta actions of a reversible task; the gripper dimension flips too. With the
    seed's convention (T observations, T - 1 actions) reversed action i again joins
    reversed observations i and i + 1; with robomimic's equal lengths the pairing is
    off by one step.
    """
    _check_demo(demo)
    actions = np.asarray(demo["actions"])
    return {
        "observations": _map_tree(demo["observations"], lambda a: np.ascontiguousarray(a[::-1])),
        "actions": np.ascontiguousarray(-actions[::-1]),
        "success": bool(demo.get("success", False)),
    }


def augment_demonstration(
    demo: Mapping[str, Any],
    config: Mapping[str, Any],
    rng: np.random.Generator | int | None = None,
) -> list[dict]:
    """``[demo, noisy (if config["add_noise"]), reversed (if config["time_reversal"])]``.

    The first element is ``demo`` itself (as in the seed), the others are new. Optional
    config keys ``obs_keys``, ``obs_sigma``, ``action_sigma``, ``clip`` tune the noise.
    """
    _check_demo(demo)
    out = [demo]
    if config.get("add_noise", False):
        out.append(add_noise(
            demo,
            obs_keys=config.get("obs_keys", DEFAULT_NOISE_KEYS),
            obs_sigma=float(config.get("obs_sigma", 0.01)),
            action_sigma=float(config.get("action_sigma", 0.05)),
            clip=config.get("clip", (-1.0, 1.0)),
            rng=rng,
        ))
    if config.get("time_reversal", False):
        out.append(time_reverse(demo))
    return out


def read_demo(group: h5py.Group, schema: str | None = None) -> dict:
    """Load one demo group (``data/demo_i``) into the demo-dict form.

    ``schema`` is ``"robomimic"`` (``obs/``), ``"seed"`` (``observations/``, nested
    groups become nested dicts) or ``"robosuite"`` (no observations: ``{}``); None
    detects it from the file. ``success`` is the demo's ``success`` attribute (False
    when absent). Missing actions load as an empty ``(0, 0)`` array. ``next_obs`` is
    not loaded: it is the observations shifted by one step.
    """
    if schema is None:
        schema = detect_schema(group.file)
    if schema not in ("robomimic", "seed", "robosuite"):
        raise ValueError(f"unknown schema {schema!r}")
    obs_name = "observations" if schema == "seed" else "obs"
    og = group.get(obs_name)
    observations = _read_tree(og) if isinstance(og, h5py.Group) else {}
    ds = group.get("actions")
    actions = ds[()] if isinstance(ds, h5py.Dataset) else np.zeros((0, 0), dtype=np.float32)
    demo: dict[str, Any] = {
        "observations": observations,
        "actions": actions,
        "success": bool(group.attrs.get("success", False)),
        "key": group.name.rsplit("/", 1)[-1],
    }
    for name in ("rewards", "dones", "states"):
        ds = group.get(name)
        if isinstance(ds, h5py.Dataset):
            demo[name] = ds[()]
    return demo


# =========================================================================== helpers


def _check_demo(demo: Mapping[str, Any]) -> None:
    if not isinstance(demo, Mapping) or "observations" not in demo or "actions" not in demo:
        raise TypeError("a demo is a dict with 'observations' (dict of arrays) and 'actions'")
    if not isinstance(demo["observations"], Mapping):
        raise TypeError("demo['observations'] must be a dict of stacked (T, ...) arrays, "
                        "not a list of per-step dicts; stack the steps per key first")


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _lookup_parent(tree: dict, path: str) -> tuple[dict | None, str]:
    parts = path.split("/")
    node: Any = tree
    for p in parts[:-1]:
        node = node.get(p) if isinstance(node, dict) else None
        if node is None:
            return None, parts[-1]
    if not isinstance(node, dict) or parts[-1] not in node or isinstance(node[parts[-1]], Mapping):
        return None, parts[-1]
    return node, parts[-1]


def _map_tree(tree: Mapping[str, Any], fn) -> dict:
    return {k: _map_tree(v, fn) if isinstance(v, Mapping) else fn(np.asarray(v))
            for k, v in tree.items()}


def _read_tree(group: h5py.Group) -> dict:
    out: dict[str, Any] = {}
    for k, v in group.items():
        out[k] = _read_tree(v) if isinstance(v, h5py.Group) else v[()]
    return out
