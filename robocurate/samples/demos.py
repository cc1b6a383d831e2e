"""Synthetic robot demonstration files (robomimic or seed layout), clean and faulty.

Clean files ``demos_{i}.hdf5`` hold a robosuite-Lift-like task recorded by
:class:`robocurate.demos.writer.DemoWriter`: a Panda end effector approaches a cube on
a table along minimum-jerk segments, grasps it and lifts it (or misses it: a mix of
successes and failures). Observations use robosuite's keys (``robot0_eef_pos``
(T,3), ``robot0_eef_quat`` (T,4, xyzw), ``robot0_gripper_qpos`` (T,2), ``object``
(T,10) = cube position, cube quaternion, gripper-to-cube vector), optionally an
``agentview_image`` (T,H,W,3) uint8 rendered from the same state and
``tactile_left``/``tactile_right`` (T,16,16,3) float32 taxel forces (normal force in
channel 0, shear in 1-2). Actions are OSC_POSE deltas normalised to [-1, 1] (T,7),
rewards are robosuite's sparse lift reward, ``dones`` marks the last step, ``states``
is a flat simulator state. Every clean file also has ``mask/train``/``mask/valid``
exactly as :func:`robocurate.demos.split.split_train_valid` with ``seed`` would
write them, so a split re-run on a clean file changes nothing.

With ``with_faults`` three more files are written: ``faulty.hdf5`` (every demo-level
fault in its own demo, plus the file-level ones), ``nodata.hdf5`` (valid HDF5, no
``data`` group) and ``broken.hdf5`` (a truncated copy: not openable).
``sample_manifest.json`` lists, per file, the findings a correct validator must report
(and nothing else): ``{"rule", "severity", "demo", "dataset", "index", "note"}``; its
``assumes`` section spells out the conventions those expectations rely on.

Pure library: no Prefect.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from robocurate.samples.motion import min_jerk_path, seeded_rng, smoothstep
from robocurate.demos.split import plan_split
from robocurate.demos.writer import DemoWriter, _untimed_group
from robocurate.io.atomic import atomic_write_bytes, atomic_write_json

__all__ = [
    "ERROR_RULES",
    "FAULT_CASES",
    "MANIFEST_NAME",
    "RULE_IDS",
    "RULE_SEVERITY",
    "WARNING_RULES",
    "generate_demos_dataset",
]

MANIFEST_NAME = "sample_manifest.json"
MANIFEST_SCHEMA = "robocurate.samples.demos/1"

ERROR_RULES = (
    "no_data_group",
    "no_observations",
    "no_actions",
    "nan",
    "inf",
    "dtype_mismatch",
    "shape_mismatch",
    "num_samples_mismatch",
    "unreadable_file",
)
WARNING_RULES = (
    "no_metadata",
    "obs_action_count",
    "stale_total",
    "demo_gap",
    "actions_out_of_range",
    "empty_mask",
    "mask_missing_demo",
)
RULE_IDS = ERROR_RULES + WARNING_RULES
RULE_SEVERITY = {**{r: "error" for r in ERROR_RULES}, **{r: "warning" for r in WARNING_RULES}}

# faulty.hdf5: demo number -> planted case. demo_5 is left out on purpose (demo_gap);
# demo_10/11 after demo_9 also exercise numeric ordering.
FAULT_CASES: dict[int, str] = {
    0: "clean",
    1: "nan",
    2: "inf",
    3: "no_observations",
    4: "no_actions",
    6: "dtype_mismatch",
    7: "shape_mismatch",
    8: "num_samples_mismatch",
    9: "obs_action_count",
    10: "actions_out_of_range",
    11: "clean",
}
GAP_DEMO = 5
MISSING_MASK_DEMO = "demo_99"
STALE_TOTAL_OFFSET = 17
VALID_FRACTION = 0.1
# A timestamp, not "now": same seed, same bytes.
CREATED = "2026-01-01 00:00:00+00:00"
ENV_NAME = "Lift"

TABLE_Z = 0.8
CUBE_HALF = 0.02
LIFT_SUCCESS_Z = TABLE_Z + 0.04 + CUBE_HALF  # robosuite Lift: cube bottom 4 cm above table
OSC_MAX_POS = 0.05  # OSC_POSE output_max for position, m per step
OSC_MAX_ROT = 0.5
CONTROL_DT = 0.05  # 20 Hz
TACTILE_SIZE = 16


def generate_demos_dataset(
    out_dir: str | os.PathLike,
    *,
    files: int = 2,
    demos_per_file: int = 8,
    seed: int = 0,
    schema: str = "robomimic",
    steps: tuple[int, int] = (40, 80),
    image_size: tuple[int, int] = (32, 32),
    with_images: bool = True,
    with_tactile: bool = False,
    with_faults: bool = True,
) -> dict:
    """Write the sample files into ``out_dir`` and return the manifest (also written
    to ``out_dir/sample_manifest.json``).

    ``steps`` is the inclusive range of transitions T per demo (robomimic: T
    observations and T actions; seed: T + 1 observations, T actions).
    ``image_size`` is (height, width). Deterministic for a seed.
    """
    if schema not in ("robomimic", "seed"):
        raise ValueError(f"schema must be 'robomimic' or 'seed', got {schema!r}")
    lo, hi = int(steps[0]), int(steps[1])
    if not 12 <= lo <= hi:
        raise ValueError(f"steps must satisfy 12 <= lo <= hi, got {steps}")
    if files < 1 or demos_per_file < 1:
        raise ValueError("files and demos_per_file must be >= 1")
    h, w = int(image_size[0]), int(image_size[1])
    if h < 8 or w < 8:
        raise ValueError(f"image_size must be at least 8x8, got {image_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    synth = _Synth(seed=seed, image_size=(h, w), with_images=with_images,
                   with_tactile=with_tactile)
    entries: list[dict] = []

    for fi in range(files):
        name = f"demos_{fi}.hdf5"
        with _writer(out / name, schema, (h, w)) as wr:
            demos = []
            for di in range(demos_per_file):
                rng = seeded_rng(seed, 1, fi, di)
                T = int(rng.integers(lo, hi + 1))
                fail = bool(rng.random() < 0.25)
                if di == demos_per_file - 1 and not any(d["success"] for d in demos):
                    # A file of failures only is itself worth a warning; clean files have none.
                    fail = False
                tr = synth.trajectory(rng, T, fail=fail)
                key = _add(wr, schema, tr)
                demos.append(_demo_entry(key, tr, "clean", schema))
            masks = plan_split(wr.keys, VALID_FRACTION, seed)
            for m, keys in masks.items():
                wr.write_mask(m, keys)
        entries.append({"path": name, "kind": "clean", "schema": schema, "readable": True,
                        "has_data": True, "demos": demos, "masks": masks, "findings": []})

    if with_faults:
        entries.append(_write_faulty(out, schema, synth, seed, (lo, hi), (h, w)))
        entries.append(_write_nodata(out, schema))
        entries.append(_write_broken(out, entries[0]["path"]))

    manifest = _manifest(entries, schema=schema, params=dict(
        files=files, demos_per_file=demos_per_file, seed=seed, schema=schema,
        steps=[lo, hi], image_size=[h, w], with_images=with_images,
        with_tactile=with_tactile, with_faults=with_faults))
    atomic_write_json(out / MANIFEST_NAME, manifest)
    return manifest


# =========================================================================== files


def _writer(path: Path, schema: str, hw: tuple[int, int]) -> DemoWriter:
    env_kwargs = {
        "robots": ["Panda"],
        "controller_configs": {"type": "OSC_POSE", "input_max": 1, "input_min": -1,
                               "output_max": [OSC_MAX_POS] * 3 + [OSC_MAX_ROT] * 3,
                               "output_min": [-OSC_MAX_POS] * 3 + [-OSC_MAX_ROT] * 3},
        "control_freq": round(1 / CONTROL_DT),
        "has_renderer": False,
        "has_offscreen_renderer": True,
        "use_object_obs": True,
        "use_camera_obs": True,
        "camera_names": ["agentview"],
        "camera_heights": hw[0],
        "camera_widths": hw[1],
        "reward_shaping": False,
    }
    return DemoWriter(path, schema=schema, env_name=ENV_NAME, created=CREATED,
                      env_args={"env_name": ENV_NAME, "env_kwargs": env_kwargs})


def _split_for_schema(tr: dict, schema: str) -> dict[str, Any]:
    """The arrays one demo is written with: robomimic uses T observations plus
    next_obs, the seed layout all T + 1 observations."""
    T = tr["T"]
    if schema == "robomimic":
        return {
            "obs": {k: v[:T] for k, v in tr["obs"].items()},
            "next_obs": {k: v[1:] for k, v in tr["obs"].items()},
            "actions": tr["actions"], "rewards": tr["rewards"], "dones": tr["dones"],
            "states": tr["states"][:T],
        }
    return {"obs": dict(tr["obs"]), "next_obs": None, "actions": tr["actions"],
            "rewards": tr["rewards"], "dones": None, "states": None}


def _add(wr: DemoWriter, schema: str, tr: dict, *, parts: dict | None = None,
         key: int | None = None, attrs: dict | None = None) -> str:
    p = parts if parts is not None else _split_for_schema(tr, schema)
    return wr.add_demo(p["obs"], p["actions"], rewards=p["rewards"], dones=p["dones"],
                       states=p["states"], next_obs=p["next_obs"], success=tr["success"],
                       attrs=attrs, key=key)


def _demo_entry(key: str, tr: dict, case: str, schema: str, *, obs_steps: int | None = None,
                actions: int | None = None) -> dict:
    T = tr["T"]
    return {"key": key, "case": case, "T": T,
            "obs_steps": obs_steps if obs_steps is not None else (T if schema == "robomimic" else T + 1),
            "actions": actions if actions is not None else T,
            "success": tr["success"]}


def _finding(rule: str, *, demo: str | None = None, dataset: str | None = None,
             index: list[int] | None = None, note: str = "") -> dict:
    return {"rule": rule, "severity": RULE_SEVERITY[rule], "demo": demo, "dataset": dataset,
            "index": index, "note": note}


def _write_faulty(out: Path, schema: str, synth: "_Synth", seed: int, steps: tuple[int, int],
                  hw: tuple[int, int]) -> dict:
    name = "faulty.hdf5"
    obs_g = "observations" if schema == "seed" else "obs"
    count_attr = "length" if schema == "seed" else "num_samples"
    demos: list[dict] = []
    findings: list[dict] = []
    actions_rows = 0  # seed: what a data.attrs["total"] would have to say
    # Built under a hidden name and renamed once complete, like every other file here.
    building = out / f".{name}.building"
    with _writer(building, schema, hw) as wr:
        for num, case in FAULT_CASES.items():
            rng = seeded_rng(seed, 2, num)
            T = int(rng.integers(steps[0], steps[1] + 1))
            tr = synth.trajectory(rng, T, fail=False)
            parts = _split_for_schema(tr, schema)
            key = f"demo_{num}"
            base = f"data/{key}"
            attrs = None
            n_obs = T if schema == "robomimic" else T + 1
            n_act = T
            # Faults go into obs only; next_obs stays clean, so each plant is one finding.
            parts["obs"] = dict(parts["obs"])
            fault_rng = seeded_rng(seed, 3, num)
            if case == "nan":
                a = parts["obs"]["robot0_eef_pos"].copy()
                r = int(fault_rng.integers(T // 4, T // 2))
                a[r, 1] = np.nan
                a[r + 3, 0] = np.nan
                parts["obs"]["robot0_eef_pos"] = a
                findings.append(_finding("nan", demo=key, dataset=f"{base}/{obs_g}/robot0_eef_pos",
                                         index=[r, 1], note="NaN at two rows; index is the first"))
            elif case == "inf":
                a = parts["actions"].copy()
                r = int(fault_rng.integers(T // 4, T // 2))
                a[r, 2] = np.inf
                parts["actions"] = a
                findings.append(_finding("inf", demo=key, dataset=f"{base}/actions", index=[r, 2],
                                         note="+Inf in actions (not also actions_out_of_range)"))
            elif case == "no_observations":
                parts["obs"] = None
                parts["next_obs"] = None
                n_obs = 0
                findings.append(_finding("no_observations", demo=key, dataset=f"{base}/{obs_g}",
                                         note=f"no {obs_g} group" + (
                                             " (nor next_obs)" if schema == "robomimic" else "")))
            elif case == "no_actions":
                parts["actions"] = None
                n_act = 0
                findings.append(_finding("no_actions", demo=key, dataset=f"{base}/actions",
                                         note="no actions dataset"))
            elif case == "dtype_mismatch":
                parts["obs"]["robot0_eef_pos"] = parts["obs"]["robot0_eef_pos"].astype(np.float64)
                findings.append(_finding("dtype_mismatch", demo=key,
                                         dataset=f"{base}/{obs_g}/robot0_eef_pos",
                                         note="float64 where every other demo has float32"))
            elif case == "shape_mismatch":
                a = parts["obs"]["object"]
                parts["obs"]["object"] = np.concatenate([a, a[:, :1]], axis=1)
                findings.append(_finding("shape_mismatch", demo=key, dataset=f"{base}/{obs_g}/object",
                                         note="(n, 11) where every other demo has (n, 10)"))
            elif case == "num_samples_mismatch":
                attrs = {count_attr: np.int64((n_act if schema == "robomimic" else n_obs) + 3)}
                findings.append(_finding("num_samples_mismatch", demo=key, note=(
                    f"attr {count_attr} is 3 more than "
                    + ("len(actions)" if schema == "robomimic" else "the observation steps"))))
            elif case == "obs_action_count":
                if schema == "robomimic":
                    # One action (and its reward/done/state) short of the observations.
                    n_act = T - 1
                    d = parts["dones"][: T - 1].copy()
                    d[-1] = 1
                    parts.update(actions=parts["actions"][: T - 1], rewards=parts["rewards"][: T - 1],
                                 dones=d, states=parts["states"][: T - 1])
                    note = f"{T} observations, {T - 1} actions (robomimic wants equal counts)"
                else:
                    n_obs = T
                    parts["obs"] = {k: v[:T] for k, v in parts["obs"].items()}
                    note = f"{T} observations, {T} actions (seed layout wants one more observation)"
                findings.append(_finding("obs_action_count", demo=key, note=note))
            elif case == "actions_out_of_range":
                a = parts["actions"].copy()
                r = int(fault_rng.integers(T // 4, T // 2))
                a[r, 0] = 1.37
                a[r + 1, 1] = -1.25
                parts["actions"] = a
                findings.append(_finding("actions_out_of_range", demo=key, dataset=f"{base}/actions",
                                         index=[r, 0], note="finite values outside [-1, 1] at two rows"))
            _add(wr, schema, tr, parts=parts, key=num, attrs=attrs)
            actions_rows += n_act
            demos.append(_demo_entry(key, tr, case, schema, obs_steps=n_obs, actions=n_act))
        present = wr.keys
        valid = ["demo_11", MISSING_MASK_DEMO]
        masks = {"train": [k for k in present if k not in valid], "valid": valid, "empty": []}
        for m, keys in masks.items():
            wr.write_mask(m, keys)
        written_total = wr.total

    # After the writer has closed: it would otherwise set the totals right again.
    with h5py.File(building, "r+") as f:
        if schema == "robomimic":
            stale = written_total + STALE_TOTAL_OFFSET
            del f["data"].attrs["env_args"]
            meta_finding = _finding("no_metadata", dataset="data",
                                    note="data.attrs['env_args'] missing")
            total_note = f"data.attrs['total'] = {stale}, sum of num_samples = {written_total}"
        else:
            stale = actions_rows + STALE_TOTAL_OFFSET
            del f["metadata"]
            meta_finding = _finding("no_metadata", dataset="metadata", note="no metadata group")
            total_note = f"data.attrs['total'] = {stale}, sum of len(actions) = {actions_rows}"
        f["data"].attrs["total"] = np.int64(stale)
    os.replace(building, out / name)

    file_findings = [
        meta_finding,
        _finding("stale_total", dataset="data", note=total_note),
        _finding("demo_gap", dataset="data", note=f"demo_{GAP_DEMO} absent between "
                                                  f"demo_{GAP_DEMO - 1} and demo_{GAP_DEMO + 1}"),
        _finding("empty_mask", dataset="mask/empty", note="mask with zero demo names"),
        _finding("mask_missing_demo", demo=MISSING_MASK_DEMO, dataset="mask/valid",
                 index=[valid.index(MISSING_MASK_DEMO)], note=f"{MISSING_MASK_DEMO} is not in data"),
    ]
    return {"path": name, "kind": "faulty", "schema": schema, "readable": True, "has_data": True,
            "demos": demos, "masks": masks, "findings": file_findings + findings}


def _write_nodata(out: Path, schema: str) -> dict:
    name = "nodata.hdf5"
    path = out / name
    tmp = path.with_name(f".{name}.writing")
    with h5py.File(tmp, "w") as f:
        if schema == "seed":
            # create_dataset_structure without its data group.
            meta = _untimed_group(f, "metadata")
            meta.attrs["created"] = CREATED
            meta.attrs["version"] = "1.0"
            meta.attrs["env_name"] = ENV_NAME
            _untimed_group(f, "statistics")
            _untimed_group(f, "models")
        else:
            # Episodes stored under another name: the shape of a wrong-format file.
            g = _untimed_group(_untimed_group(f, "episodes"), "episode_0")
            g.create_dataset("actions", data=np.zeros((4, 7), np.float32), track_times=False)
    os.replace(tmp, path)
    return {"path": name, "kind": "nodata", "schema": schema, "readable": True, "has_data": False,
            "demos": [], "masks": {},
            "findings": [_finding("no_data_group", dataset="data", note="no 'data' group")]}


def _write_broken(out: Path, source: str) -> dict:
    raw = (out / source).read_bytes()
    # HDF5 checks the stored end-of-file address on open: any cut makes it refuse.
    atomic_write_bytes(out / "broken.hdf5", raw[: max(512, len(raw) * 2 // 5)])
    return {"path": "broken.hdf5", "kind": "broken", "schema": None, "readable": False,
            "has_data": None, "demos": [], "masks": {},
            "findings": [_finding("unreadable_file", note=f"first 40% of {source}: truncated")]}


# =========================================================================== manifest


def _manifest(entries: list[dict], *, schema: str, params: dict) -> dict:
    obs_g = "observations" if schema == "seed" else "obs"
    covered = sorted({f["rule"] for e in entries for f in e["findings"]})
    by_rule: dict[str, int] = {}
    for e in entries:
        for f in e["findings"]:
            by_rule[f["rule"]] = by_rule.get(f["rule"], 0) + 1
    all_demos = [d for e in entries if e["kind"] == "clean" for d in e["demos"]]
    return {
        "schema": MANIFEST_SCHEMA,
        "demo_schema": schema,
        "params": params,
        "rule_ids": {"error": list(ERROR_RULES), "warning": list(WARNING_RULES)},
        "rules_covered": covered,
        "split": {"valid_fraction": VALID_FRACTION, "seed": params["seed"]},
        "finding_fields": {
            "rule": "one of rule_ids",
            "severity": "error | warning",
            "demo": "demo group name (data/<demo>), or null for file-level findings",
            "dataset": "HDF5 path of the object concerned, from the root, no leading '/'; null "
                       "when it is the file or the demo as a whole",
            "index": "first offending element of the dataset in C order ([row, col]); for "
                     "mask_missing_demo the position in the mask ([i]); else null",
            "note": "for people",
        },
        "assumes": {
            "clean_files": "files of kind 'clean' have no findings at all",
            "num_samples_mismatch": "robomimic: demo attr num_samples vs len(actions) (obs rows "
                                    "when there are no actions); seed: attr length vs the "
                                    "number of observation steps; one finding per demo",
            "obs_action_count": f"{obs_g} rows vs action rows: robomimic equal, seed one more "
                                f"observation; obs rows differing from actions are reported "
                                f"here and not as num_samples_mismatch",
            "nonfinite": "NaN/Inf are reported once per dataset (index = first in C order); range "
                         "checks (actions_out_of_range) consider finite values only",
            "dtype_shape": "dtype_mismatch/shape_mismatch name the demo whose obs dataset differs "
                           "from what the majority of demos have for that key (shape: trailing "
                           "dims); faults are planted in obs only, next_obs stays consistent",
            "stale_total": "robomimic: data.attrs['total'] vs sum of num_samples attrs; seed: "
                           "data.attrs['total'] when present vs sum of len(actions)",
            "demo_gap": "demo_i numbers must be consecutive; one finding per file",
            "no_metadata": "robomimic: data.attrs['env_args'] missing; seed: no metadata group",
            "no_data_group": "a file without 'data' is reported with no_data_group only",
            "unreadable_file": "a file HDF5 cannot open is reported with unreadable_file only",
        },
        "files": entries,
        "totals": {
            "files": len(entries),
            "clean_files": sum(e["kind"] == "clean" for e in entries),
            "clean_demos": len(all_demos),
            "clean_successes": sum(d["success"] for d in all_demos),
            "clean_steps": sum(d["T"] for d in all_demos),
            "findings": sum(by_rule.values()),
            "findings_by_rule": dict(sorted(by_rule.items())),
        },
    }


# =========================================================================== synthesis


class _Synth:
    """Kinematically consistent pick-and-lift episodes: every observation, action,
    reward, state, image and tactile frame derives from one end-effector/cube path."""

    def __init__(self, *, seed: int, image_size: tuple[int, int], with_images: bool,
                 with_tactile: bool) -> None:
        self.h, self.w = image_size
        self.with_images = with_images
        self.with_tactile = with_tactile
        rng = seeded_rng(seed, 0)
        # A fixed linearised arm: joint angles follow the end effector smoothly.
        self.q_home = np.array([0.0, 0.2, 0.0, -2.4, 0.0, 2.6, 0.78])
        self.jac = rng.normal(0.0, 1.2, (7, 3))
        yy, xx = np.mgrid[0:self.h, 0:self.w]
        self.yy = yy.astype(np.float32)[None]
        self.xx = xx.astype(np.float32)[None]
        # Static sensor pattern (fixed-pattern noise) and scene colours.
        self.texture = rng.integers(-4, 5, (self.h, self.w, 1)).astype(np.int16)
        ty, tx = np.mgrid[0:TACTILE_SIZE, 0:TACTILE_SIZE]
        self.ty = ty.astype(np.float32)
        self.tx = tx.astype(np.float32)

    def trajectory(self, rng: np.random.Generator, T: int, *, fail: bool) -> dict:
        n = T + 1  # states s_0..s_T; action t moves s_t to s_{t+1}
        t = np.linspace(0.0, 1.0, n)
        cube0 = np.array([rng.uniform(-0.04, 0.04), rng.uniform(-0.04, 0.04), TABLE_Z + CUBE_HALF])
        yaw_c = rng.uniform(-np.pi / 4, np.pi / 4)
        eef0 = np.array([-0.10, 0.0, 1.0]) + rng.normal(0.0, 0.01, 3)
        miss = np.zeros(3)
        if fail:
            # The grasp misses sideways: fingers close on air, the cube stays put.
            miss[:2] = rng.choice([-1, 1], 2) * rng.uniform(0.03, 0.045, 2)
        grasp = cube0 + miss + np.array([0, 0, 0.005])
        t1, t2, t3 = (0.35, 0.55, 0.65) + rng.uniform(-0.03, 0.03, 3)
        way = np.stack([eef0, grasp + [0, 0, 0.10], grasp, grasp, grasp + [0, 0, 0.20]])
        way[1:] += rng.normal(0.0, 0.003, (4, 3))
        way[3] = way[2]
        eef = min_jerk_path(way, np.array([0.0, t1, t2, t3, 1.0]), t)
        # Hand tremor: small, smooth.
        eef += 0.0015 * np.sin(2 * np.pi * (rng.uniform(2, 4, 3) * t[:, None] + rng.uniform(0, 1, 3)))

        yaw = yaw_c * smoothstep(t / t1)
        eef_quat = _quat_mul_xyzw(np.stack([np.zeros(n), np.zeros(n), np.sin(yaw / 2), np.cos(yaw / 2)], 1),
                                  np.array([1.0, 0.0, 0.0, 0.0]))
        eef_quat += rng.normal(0.0, 0.002, eef_quat.shape)
        eef_quat /= np.linalg.norm(eef_quat, axis=1, keepdims=True)

        close = smoothstep((t - t2) / max(t3 - t2, 1e-6))
        g_closed = 0.0 if fail else CUBE_HALF + 0.0005
        g = 0.04 + (g_closed - 0.04) * close
        gripper = np.stack([g, -g], 1)

        cube = np.repeat(cube0[None], n, 0)
        held = (t >= t3) & (not fail)
        if held.any():
            offset = eef[np.argmax(held)] - cube0
            cube[held] = eef[held] - offset
        cube_quat = np.repeat([[0.0, 0.0, np.sin(yaw_c / 2), np.cos(yaw_c / 2)]], n, 0)
        obj = np.concatenate([cube, cube_quat, eef - cube], 1)

        d = np.diff(eef, axis=0) / OSC_MAX_POS
        drot = np.zeros((T, 3))
        drot[:, 2] = np.diff(yaw) / OSC_MAX_ROT
        grip_cmd = np.where(t[:-1] >= t2, 1.0, -1.0)[:, None]
        actions = np.concatenate([d, drot, grip_cmd], 1)
        actions[:, :6] += rng.normal(0.0, 0.02, (T, 6))
        actions = np.clip(actions, -1.0, 1.0).astype(np.float32)

        lifted = cube[:, 2] > LIFT_SUCCESS_Z
        rewards = lifted[1:].astype(np.float32)
        dones = np.zeros(T, np.uint8)
        dones[-1] = 1

        q = self.q_home + (eef - eef0) @ self.jac.T
        qvel = np.gradient(q, CONTROL_DT, axis=0)
        cube_quat_wxyz = cube_quat[:, [3, 0, 1, 2]]
        states = np.concatenate([(np.arange(n) * CONTROL_DT)[:, None], q, gripper, cube,
                                 cube_quat_wxyz, qvel], 1)

        obs: dict[str, np.ndarray] = {
            "robot0_eef_pos": eef.astype(np.float32),
            "robot0_eef_quat": eef_quat.astype(np.float32),
            "robot0_gripper_qpos": gripper.astype(np.float32),
            "object": obj.astype(np.float32),
        }
        if self.with_images:
            obs["agentview_image"] = self._render(rng, eef, g, cube)
        if self.with_tactile:
            # Contact from the moment the closing fingers reach the cube; the squeeze
            # builds up as they close, lifting adds load.
            contact = (close > 0.3).astype(np.float64) * (not fail)
            lift_rate = np.gradient(cube[:, 2], axis=0) / 0.01
            force = contact * (6.0 * close) * (1.0 + 0.3 * np.clip(lift_rate, 0.0, None))
            obs["tactile_left"] = self._tactile(rng, force)
            obs["tactile_right"] = self._tactile(rng, force)
        return {"T": T, "obs": obs, "actions": actions, "rewards": rewards, "dones": dones,
                "states": states.astype(np.float64), "success": bool(lifted[-1])}

    def _render(self, rng, eef, g, cube) -> np.ndarray:
        """A front camera (robosuite's agentview) looking at the table along -x."""
        h, w = self.h, self.w
        n = eef.shape[0]
        cam_x = 1.0
        f = w / 0.5  # 0.5 m wide at unit depth

        def project(p):
            s = f / (cam_x - p[:, 0])
            return w / 2 - s * p[:, 1], h * 0.3 + s * (1.05 - p[:, 2]), s

        horizon = h * 0.3 + f * (1.05 - TABLE_Z)
        tint = rng.uniform(-12, 12, 3)
        img = np.empty((n, h, w, 3), np.int16)
        wall = (np.array([170, 175, 185]) + tint).astype(np.int16)
        table = (np.array([120, 90, 60]) + tint).astype(np.int16)
        below = (self.yy >= horizon)[..., None]
        img[:] = np.where(below, table, wall - (self.yy[..., None] * 1.5).astype(np.int16))

        def rect(cu, cv, hu, hv):
            return ((np.abs(self.xx - cu[:, None, None]) <= hu[:, None, None])
                    & (np.abs(self.yy - cv[:, None, None]) <= hv[:, None, None]))

        cu, cv, s = project(cube)
        img[rect(cu, cv, CUBE_HALF * s, CUBE_HALF * s)] = (200, 30, 30)
        eu, ev, s = project(eef)
        img[rect(eu, ev - 0.05 * s, 0.02 * s, 0.025 * s)] = (60, 60, 65)  # gripper body
        for side in (-1, 1):
            img[rect(eu + side * g * s, ev, np.maximum(0.006 * s, 0.5), 0.025 * s)] = (40, 40, 45)
        img[rect(eu, (ev - 0.05 * s) / 2 - 1, np.maximum(0.012 * s, 0.6),
                 np.maximum((ev - 0.05 * s) / 2, 0.5))] = (230, 230, 235)  # arm link from above
        img += self.texture[None]
        return np.clip(img, 0, 255).astype(np.uint8)

    def _tactile(self, rng, force) -> np.ndarray:
        n = force.shape[0]
        cy, cx = rng.uniform(6, 10, 2)
        sig = rng.uniform(2.0, 3.0)
        blob = np.exp(-((self.ty - cy) ** 2 + (self.tx - cx) ** 2) / (2 * sig * sig))
        blob /= blob.sum()
        out = np.zeros((n, TACTILE_SIZE, TACTILE_SIZE, 3), np.float32)
        out[..., 0] = force[:, None, None] * blob
        out[..., 1] = 0.1 * force[:, None, None] * blob * (self.ty - cy) / TACTILE_SIZE
        out[..., 2] = 0.1 * force[:, None, None] * blob * (self.tx - cx) / TACTILE_SIZE
        out[..., 0] += np.abs(rng.normal(0.0, 0.002, (n, TACTILE_SIZE, TACTILE_SIZE)))
        # A 10-bit-per-newton ADC: real taxels are quantised, and quantised noise
        # compresses where raw float noise would not.
        return np.round(out * 1024.0) / np.float32(1024.0)


# =========================================================================== helpers





def _quat_mul_xyzw(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ax, ay, az, aw = np.moveaxis(np.broadcast_to(a, np.broadcast_shapes(a.shape, b.shape)), -1, 0)
    bx, by, bz, bw = np.moveaxis(np.broadcast_to(b, np.broadcast_shapes(a.shape, b.shape)), -1, 0)
    return np.stack([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz], -1)
