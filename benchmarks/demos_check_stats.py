"""Throughput of ``check_file`` and ``file_stats`` on one 2 GB demo file against plain h5py.

Data: one robomimic-layout HDF5 file of more than 2 GB on disk, written with
:class:`robocurate.demos.writer.DemoWriter` (its defaults: gzip level 4, byte shuffle on
multi-byte types, images one frame per chunk) and reused while its parameters stay the
same (``/work/bench-data/demos-2g/demos_2g.hdf5``, ``.bench-params.json`` beside it).
``--demos`` demos of ``--steps`` (a range) steps each, robomimic's dtypes: float64
low-dim observations ``robot0_eef_pos (3)``, ``robot0_eef_quat (4)``,
``robot0_gripper_qpos (2)``, ``robot0_joint_pos (7)``, ``robot0_joint_vel (7)``,
``object (10)``, two 84x84x3 uint8 cameras ``agentview_image`` and
``robot0_eye_in_hand_image``, float64 ``actions (7)`` in [-1, 1], float64 ``rewards``,
int64 ``dones``, float64 ``states (32)``, attrs ``num_samples``/``success``, and
``mask/train``/``mask/valid``. The images are smooth rendered-looking scenes with moving
objects, a fixed-pattern texture and per-pixel noise (sigma 1): gzip keeps about 70% of
their bytes (~14.7 KB of 21.2 KB per frame). The defaults, 300 demos of 240-300 steps
(80,854 steps), give a 2,446 MB file (3,471 MB uncompressed, 99% of it images), written
in about 150 s.

Timed, single process, each first with the page cache dropped ("cold", when
``/proc/sys/vm/drop_caches`` can be written) and then ``--repeats`` times warm:

(a) baseline: open the file with h5py and read every dataset once with ``ds[()]``,
    demo by demo (masks included);
(b) check: ``check_file(path)`` (its manifest must have no findings);
(c) stats: ``file_stats(path, values_dir)`` + ``merge_file_stats([m])`` (``values_dir``
    is a fresh scratch folder under the data folder, removed after each run).

MB/s counts, for every variant alike, the uncompressed bytes of all the file's datasets
(and, separately, the file's bytes on disk). RATIO = baseline seconds / variant seconds
(the same as the throughput ratio), median of the warm runs; target >= 0.5 each.

Neither function reads most of the file: ``check_file`` streams float datasets only
(integers, so the images, cannot hold NaN/Inf) and ``file_stats`` samples 4 frames per
image dataset. For reference only (not the target), the same h5py reads restricted to
what each function actually reads: (a-check) ``ds[()]`` of every float dataset plus the
masks; (a-stats) ``ds[()]`` of actions and every low-dim observation plus the 4 frames
per image dataset that ``file_stats`` samples, read as it reads them (``ds[idx]``).
``--profile`` adds cProfile runs of check and stats (warm) and times that frame sampling
as ``ds[idx]`` against one ``ds[i]`` per frame.

    .venv/bin/python benchmarks/demos_check_stats.py [--demos 300] [--steps 240 300]
        [--repeats 3] [--no-cold] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

NAME = "demos_check_stats"
TARGET = 0.5
FILE_NAME = "demos_2g.hdf5"
GEN_VERSION = 1
LOW_DIM = {"robot0_eef_pos": 3, "robot0_eef_quat": 4, "robot0_gripper_qpos": 2,
           "robot0_joint_pos": 7, "robot0_joint_vel": 7, "object": 10}
CAMERAS = ("agentview_image", "robot0_eye_in_hand_image")
IMAGE_HW = (84, 84)
ACTION_DIM = 7
STATE_DIM = 32
NOISE_SIGMA = 1.0
NOISE_BANK = 509  # prime: frame t of demo d takes noise frame (offset_d + 7 t) % NOISE_BANK


# =========================================================================== data


class _Scene:
    """Cheap, vectorised, rendered-looking frames: smooth wall/table, moving cube and
    gripper, a static texture and per-pixel noise. Per frame gzip sees about what it
    would see in a real 84x84 render: gradients, flat patches and fine noise."""

    def __init__(self, rng):
        import numpy as np

        h, w = IMAGE_HW
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        self.yy, self.xx = yy, xx
        # Per camera: static texture (wood grain, sensor pattern), +-3 levels.
        self.texture = [rng.integers(-3, 4, (h, w, 1)).astype(np.float32) for _ in CAMERAS]
        self.noise = np.clip(np.round(rng.normal(0.0, NOISE_SIGMA, (NOISE_BANK, h, w, 3))),
                             -4, 4).astype(np.float32)

    def _background(self, horizon, tint):
        import numpy as np

        yy, xx = self.yy, self.xx
        wall = np.array([170, 175, 185], np.float32) + tint
        table = np.array([120, 90, 60], np.float32) + tint
        below = (yy >= horizon)[..., None]
        bg = np.where(below, table + (yy[..., None] - horizon) * 0.8,
                      wall - yy[..., None] * 0.6)
        return bg + (xx[..., None] - 42.0) * 0.25  # lighting falloff

    def _blobs(self, frames, base, items):
        import numpy as np

        xx, yy = self.xx[None], self.yy[None]
        for u, v, hu, hv, colour in items:
            # soft-edged rectangles (anti-aliased object silhouettes)
            a = np.clip(hu[:, None, None] + 0.5 - np.abs(xx - u[:, None, None]), 0, 1)
            b = np.clip(hv[:, None, None] + 0.5 - np.abs(yy - v[:, None, None]), 0, 1)
            m = (a * b)[..., None]
            frames += m * (np.asarray(colour, np.float32) - frames)

    def render(self, rng, cam: int, eef, grip, cube):
        import numpy as np

        T = eef.shape[0]
        h, w = IMAGE_HW
        tint = rng.uniform(-12, 12, 3).astype(np.float32)
        if cam == 0:  # agentview: fixed camera in front of the table
            base = self._background(40.0, tint)
            frames = np.broadcast_to(base, (T, h, w, 3)).copy()
            s = 120.0 / (1.2 - eef[:, 0])
            eu, ev = w / 2 - s * eef[:, 1], 30 + s * (1.05 - eef[:, 2])
            sc = 120.0 / (1.2 - cube[:, 0])
            cu, cv = w / 2 - sc * cube[:, 1], 30 + sc * (1.05 - cube[:, 2])
            one = np.ones(T, np.float32)
            self._blobs(frames, base, [
                (cu, cv, 0.02 * sc, 0.02 * sc, (200, 30, 30)),
                (eu, ev - 0.05 * s, 0.02 * s, 0.025 * s, (60, 60, 65)),
                (eu - grip * s, ev, 0.006 * s * one, 0.025 * s, (40, 40, 45)),
                (eu + grip * s, ev, 0.006 * s * one, 0.025 * s, (40, 40, 45)),
                (eu, (ev - 0.05 * s) / 2, 0.012 * s, (ev - 0.05 * s) / 2, (230, 230, 235)),
            ])
        else:  # eye in hand: looks down, the table fills the view, the cube grows
            base = self._background(-1.0, tint)
            frames = np.broadcast_to(base, (T, h, w, 3)).copy()
            dz = np.maximum(eef[:, 2] - cube[:, 2], 0.03)
            s = 25.0 / dz
            cu = w / 2 + s * (cube[:, 1] - eef[:, 1])
            cv = h / 2 + s * (cube[:, 0] - eef[:, 0])
            one = np.ones(T, np.float32)
            self._blobs(frames, base, [
                (cu, cv, 0.02 * s, 0.02 * s, (200, 30, 30)),
                (w / 2 - 30 * grip / 0.04 * one, h - 8 * one, 4 * one, 8 * one, (40, 40, 45)),
                (w / 2 + 30 * grip / 0.04 * one, h - 8 * one, 4 * one, 8 * one, (40, 40, 45)),
            ])
        frames += self.texture[cam][None]
        start = int(rng.integers(NOISE_BANK))
        frames += self.noise[(start + 7 * np.arange(T)) % NOISE_BANK]
        return np.clip(frames + 0.5, 0, 255).astype(np.uint8)


def _demo(rng, scene: _Scene, T: int) -> dict:
    """One pick-and-lift-like episode: smooth paths, every low-dim key consistent."""
    import numpy as np

    t = np.linspace(0.0, 1.0, T)
    cube0 = np.array([rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05), 0.82])
    eef0 = np.array([-0.1, 0.0, 1.0]) + rng.normal(0, 0.01, 3)
    s = np.clip(t / 0.5, 0, 1)
    s = s * s * s * (10 - 15 * s + 6 * s * s)
    lift = np.clip((t - 0.65) / 0.35, 0, 1)[:, None] * np.array([0, 0, 0.2])
    eef = eef0 + s[:, None] * (cube0 + [0, 0, 0.01] - eef0) + lift
    eef += 0.0015 * np.sin(2 * np.pi * (rng.uniform(2, 4, 3) * t[:, None] + rng.uniform(0, 1, 3)))
    success = bool(rng.random() < 0.8)
    cube = np.repeat(cube0[None], T, 0)
    if success:
        cube = cube + lift
    yaw = rng.uniform(-0.7, 0.7) * s
    quat = np.stack([np.cos(yaw / 2), np.sin(yaw / 2), np.zeros(T), np.zeros(T)], 1)
    quat += rng.normal(0, 0.002, quat.shape)
    quat /= np.linalg.norm(quat, axis=1, keepdims=True)
    close = np.clip((t - 0.55) / 0.1, 0, 1)
    grip = 0.04 - 0.02 * close
    jac = rng.normal(0, 1.0, (7, 3))
    qpos = np.array([0, 0.2, 0, -2.4, 0, 2.6, 0.78]) + (eef - eef0) @ jac.T
    qvel = np.gradient(qpos, 0.05, axis=0)
    obj = np.concatenate([cube, np.repeat([[1.0, 0, 0, 0]], T, 0), eef - cube], 1)
    actions = np.concatenate([np.gradient(eef, axis=0) / 0.05, np.zeros((T, 2)),
                              np.gradient(yaw)[:, None] / 0.5,
                              np.where(close > 0, 1.0, -1.0)[:, None]], 1)
    actions[:, :6] += rng.normal(0, 0.02, (T, 6))
    actions = np.clip(actions, -1, 1)
    states = np.concatenate([t[:, None], qpos, np.stack([grip, -grip], 1), cube, quat, qvel,
                             rng.normal(0, 1e-3, (T, STATE_DIM - 1 - 7 - 2 - 3 - 4 - 7))], 1)
    rewards = (success & (t > 0.8)).astype(np.float64)
    dones = np.zeros(T, np.int64)
    dones[-1] = 1
    obs = {"robot0_eef_pos": eef, "robot0_eef_quat": quat,
           "robot0_gripper_qpos": np.stack([grip, -grip], 1), "robot0_joint_pos": qpos,
           "robot0_joint_vel": qvel, "object": obj}
    for c, cam in enumerate(CAMERAS):
        obs[cam] = scene.render(rng, c, eef.astype(np.float32), grip.astype(np.float32),
                                cube.astype(np.float32))
    return {"obs": obs, "actions": actions, "rewards": rewards, "dones": dones,
            "states": states, "success": success}


def generate(path: Path, demos: int, steps: tuple[int, int], seed: int) -> None:
    import numpy as np

    from robocurate.demos.writer import DemoWriter

    rng = np.random.default_rng(seed)
    scene = _Scene(rng)
    with DemoWriter(path, schema="robomimic", env_name="Lift",
                    env_args={"env_kwargs": {"robots": ["Panda"], "camera_names": list(CAMERAS),
                                             "camera_heights": IMAGE_HW[0],
                                             "camera_widths": IMAGE_HW[1]}}) as w:
        for d in range(demos):
            T = int(rng.integers(steps[0], steps[1] + 1))
            ep = _demo(rng, scene, T)
            w.add_demo(ep["obs"], ep["actions"], rewards=ep["rewards"], dones=ep["dones"],
                       states=ep["states"], success=ep["success"])
            if (d + 1) % 50 == 0:
                print(f"  generated {d + 1}/{demos} demos", flush=True)
        keys = w.keys
        n_valid = max(1, len(keys) // 10)
        w.write_mask("train", keys[:-n_valid])
        w.write_mask("valid", keys[-n_valid:])


def ensure_file(root: Path, params: dict) -> tuple[Path, float | None]:
    root.mkdir(parents=True, exist_ok=True)
    path = root / FILE_NAME
    marker = root / _common.PARAMS_FILE
    key = json.dumps(params, sort_keys=True)
    if path.is_file() and marker.is_file() and marker.read_text() == key:
        return path, None
    marker.unlink(missing_ok=True)
    t0 = time.perf_counter()
    generate(path, params["demos"], tuple(params["steps"]), params["seed"])
    os.sync()
    secs = time.perf_counter() - t0
    marker.write_text(key)
    return path, secs


# =========================================================================== plans


def inventory(path: Path) -> dict:
    """Every dataset in file order (demo by demo), with raw and stored bytes."""
    import h5py
    import numpy as np

    from robocurate.demos.layout import demo_keys

    rows = []  # (name, raw bytes, stored bytes, kind)
    with h5py.File(path, "r") as f:
        groups = [f"data/{k}" for k in demo_keys(f["data"])] + [k for k in f if k != "data"]
        for g in groups:
            names: list[str] = []
            f[g].visit(lambda n, g=g: names.append(n)
                       if isinstance(f[g][n], h5py.Dataset) else None)
            for n in sorted(names):
                ds = f[f"{g}/{n}"]
                kind = ("image" if ds.dtype == np.uint8 and ds.ndim == 4 else
                        "float" if ds.dtype.kind == "f" else "other")
                rows.append((f"{g}/{n}", ds.size * ds.dtype.itemsize,
                             ds.id.get_storage_size(), kind, ds.shape[0] if ds.ndim else 0))
        demos = len(demo_keys(f["data"]))
        steps = int(np.asarray(f["data"].attrs["total"]))
    by_kind = {}
    for _, raw, stored, kind, _ in rows:
        k = by_kind.setdefault(kind, {"datasets": 0, "uncompressed_bytes": 0, "stored_bytes": 0})
        k["datasets"] += 1
        k["uncompressed_bytes"] += raw
        k["stored_bytes"] += stored
    return {"rows": rows, "demos": demos, "steps": steps,
            "datasets": len(rows), "uncompressed_bytes": sum(r[1] for r in rows),
            "stored_bytes": sum(r[2] for r in rows), "by_kind": by_kind}


def stats_frames(n: int, per_demo: int = 4):
    """The frames ``file_stats`` samples from an image dataset of n frames."""
    import numpy as np
    return np.unique(np.linspace(0, n - 1, min(per_demo, n)).round().astype(int))


# =========================================================================== variants


def run_baseline(path: Path, rows, only: str | None = None) -> tuple[float, int]:
    """Read datasets with h5py: all with ``ds[()]`` (only=None), or what check / stats read."""
    import h5py

    t0 = time.perf_counter()
    total = 0
    with h5py.File(path, "r") as f:
        for name, _, _, kind, n in rows:
            if only == "check" and kind != "float" and not name.startswith("mask/"):
                continue
            if only == "stats":
                leaf = name.split("/", 2)[-1]
                if not (leaf == "actions" or leaf.startswith("obs/")):
                    continue
                if kind == "image":
                    total += f[name][stats_frames(n)].nbytes
                    continue
            total += f[name][()].nbytes
    return time.perf_counter() - t0, total


def run_check(path: Path, _rows=None):
    from robocurate.demos.check import check_file

    t0 = time.perf_counter()
    m = check_file(path)
    dt = time.perf_counter() - t0
    if m["status"] != "ok" or m["findings"]:
        raise SystemExit(f"check_file reported findings on the clean file: {m['findings'][:3]}")
    return dt, m


def run_stats(path: Path, _rows=None, scratch: Path | None = None):
    from robocurate.demos.statistics import file_stats, merge_file_stats

    values = scratch / "stats-values"
    shutil.rmtree(values, ignore_errors=True)
    t0 = time.perf_counter()
    m = file_stats(path, values)
    summary = merge_file_stats([m])
    dt = time.perf_counter() - t0
    shutil.rmtree(values, ignore_errors=True)
    if m["status"] != "ok" or m["findings"]:
        raise SystemExit(f"file_stats reported findings: {m['findings'][:3]}")
    return dt, summary


def frame_sampling(path: Path, rows) -> dict:
    """Where file_stats' image time goes: ``ds[idx]`` (h5py fancy indexing, what it does)
    against one ``ds[i]`` per sampled frame, over every image dataset, warm."""
    import h5py
    import numpy as np

    images = [(name, n) for name, _, _, kind, n in rows if kind == "image"]
    out = {"image_datasets": len(images)}
    with h5py.File(path, "r") as f:
        for label, read in (("fancy_index_ds[idx]_s", lambda ds, idx: ds[idx]),
                            ("one_ds[i]_per_frame_s",
                             lambda ds, idx: np.stack([ds[int(i)] for i in idx]))):
            for _ in range(2):  # first pass warms the page cache, second is timed
                t0 = time.perf_counter()
                for name, n in images:
                    read(f[name], stats_frames(n))
                out[label] = round(time.perf_counter() - t0, 3)
    return out


def profile(fn, *args, top: int = 18) -> tuple[float, str, list]:
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    pr.enable()
    fn(*args)
    pr.disable()
    dt = time.perf_counter() - t0
    buf = io.StringIO()
    st = pstats.Stats(pr, stream=buf).sort_stats("cumulative")
    st.print_stats(top)
    entries = []
    for (file, line, func), (cc, nc, tt, ct, _) in sorted(
            st.stats.items(), key=lambda kv: -kv[1][3])[:top]:
        entries.append({"function": f"{Path(file).name}:{line}({func})", "calls": nc,
                        "tottime_s": round(tt, 3), "cumtime_s": round(ct, 3)})
    return dt, buf.getvalue(), entries


# =========================================================================== main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=_common.BENCH_DATA / "demos-2g",
                    help="folder of the generated file (reused when its parameters match)")
    ap.add_argument("--demos", type=int, default=300)
    ap.add_argument("--steps", type=int, nargs=2, default=[240, 300],
                    help="inclusive range of steps per demo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="warm runs of each variant")
    ap.add_argument("--no-cold", action="store_true",
                    help="skip the dropped-page-cache runs")
    ap.add_argument("--profile", action="store_true",
                    help="also profile check and stats (warm) with cProfile")
    args = ap.parse_args()

    params = {"demos": args.demos, "steps": list(args.steps), "seed": args.seed,
              "low_dim": LOW_DIM, "cameras": list(CAMERAS), "image": [*IMAGE_HW, 3],
              "noise_sigma": NOISE_SIGMA, "writer": "DemoWriter defaults (gzip 4, shuffle)",
              "version": GEN_VERSION}
    path, gen_s = ensure_file(args.data, params)
    inv = inventory(path)
    file_bytes = path.stat().st_size
    mb_raw, mb_disk = inv["uncompressed_bytes"] / 1e6, file_bytes / 1e6
    print(f"file {path}: " + (f"generated in {gen_s:.1f} s" if gen_s else "reused"))
    print(f"  {mb_disk:.1f} MB on disk, {inv['demos']} demos, {inv['steps']} steps, "
          f"{inv['datasets']} datasets = {mb_raw:.1f} MB uncompressed "
          f"({inv['stored_bytes'] / 1e6:.1f} MB stored)")
    for kind, k in inv["by_kind"].items():
        print(f"    {kind:<5}: {k['datasets']:5d} datasets, {k['uncompressed_bytes'] / 1e6:9.1f} MB "
              f"raw, {k['stored_bytes'] / 1e6:8.1f} MB stored")

    load0 = round(os.getloadavg()[0], 2)
    can_drop = not args.no_cold and _common.drop_caches()
    print(f"drop_caches: {'works' if can_drop else 'not used'}; load average at start "
          f"{os.getloadavg()[0]:.2f} (nproc {os.cpu_count()})")
    modes = (["cold"] if can_drop else []) + ["warm"] * args.repeats
    rows = inv["rows"]
    scratch = args.data

    variants = {
        "baseline": lambda: run_baseline(path, rows),
        "check": lambda: run_check(path),
        "stats": lambda: run_stats(path, scratch=scratch),
        "baseline-check-reads": lambda: run_baseline(path, rows, "check"),
        "baseline-stats-reads": lambda: run_baseline(path, rows, "stats"),
    }
    # imports outside the timings
    import h5py  # noqa: F401

    import robocurate.demos.check  # noqa: F401
    import robocurate.demos.statistics  # noqa: F401

    runs = []
    extra = {}
    for variant, fn in variants.items():
        for mode in modes:
            if mode == "cold":
                _common.drop_caches()
            st0 = _common.steal_seconds()
            dt, out = fn()
            steal = _common.steal_seconds() - st0
            if variant.startswith("baseline"):
                extra[variant + "_bytes_read"] = out
            elif variant == "check":
                extra["check_manifest"] = {k: out[k] for k in ("demos", "steps", "errors",
                                                               "warnings")}
            elif variant == "stats":
                extra["stats_summary"] = {"demos": out["demos"], "total_steps": out["total_steps"],
                                          "keys": len(out["keys"]), "images": len(out["images"])}
            row = {"variant": variant, "cache": mode, "seconds": round(dt, 3),
                   "MBps_uncompressed": round(mb_raw / dt, 1),
                   "MBps_on_disk": round(mb_disk / dt, 1), "cpu_steal_s": round(steal, 2),
                   "loadavg_1m_after": round(os.getloadavg()[0], 2)}
            runs.append(row)
            print(f"  {variant:<21} {mode:<4} {dt:8.3f} s {row['MBps_uncompressed']:9.1f} MB/s raw "
                  f"{row['MBps_on_disk']:8.1f} MB/s disk  steal={steal:.1f}s", flush=True)

    def secs(variant, mode):
        xs = [r["seconds"] for r in runs if r["variant"] == variant and r["cache"] == mode]
        return statistics.median(xs) if xs else None

    summary_rows, ratios = [], {}
    for mode in dict.fromkeys(modes):
        b = secs("baseline", mode)
        for variant in variants:
            s = secs(variant, mode)
            summary_rows.append([variant, mode, s, mb_raw / s, mb_disk / s,
                                 "" if variant == "baseline" else b / s])
        for v in ("check", "stats"):
            ratios.setdefault(v, {})[mode] = round(b / secs(v, mode), 3)
        ratios.setdefault("check_vs_same_reads", {})[mode] = round(
            secs("baseline-check-reads", mode) / secs("check", mode), 3)
        ratios.setdefault("stats_vs_same_reads", {})[mode] = round(
            secs("baseline-stats-reads", mode) / secs("stats", mode), 3)

    profiles = {}
    if args.profile:
        for variant, fn in (("check", lambda: run_check(path)),
                            ("stats", lambda: run_stats(path, scratch=scratch))):
            dt, text, entries = profile(fn)
            print(f"\n---- cProfile {variant} (warm, {dt:.2f} s under the profiler)\n{text}")
            profiles[variant] = {"seconds_profiled": round(dt, 3), "top_cumulative": entries}
        profiles["image_frame_sampling"] = sampling = frame_sampling(path, rows)
        print("image frames sampled as file_stats does (4 per image dataset, warm): "
              + ", ".join(f"{k} {v} s" for k, v in sampling.items() if k.endswith("_s")))

    print()
    print(_common.table(summary_rows, ["variant", "cache", "s (median)", "MB/s raw",
                                       "MB/s disk", "baseline s / s"]))
    for k, v in ratios.items():
        print(f"  {k}: " + ", ".join(f"{m} {x}" for m, x in v.items()))
    r_check, r_stats = ratios["check"]["warm"], ratios["stats"]["warm"]

    out = _common.write_result(NAME, {
        "parameters": {**params, "repeats": args.repeats, "file": str(path),
                       "single_process": True},
        "drop_caches_worked": can_drop,
        "loadavg_1m_at_start": load0,
        "generation_seconds": round(gen_s, 1) if gen_s else None,
        "data": {"file_bytes": file_bytes, "demos": inv["demos"], "steps": inv["steps"],
                 "datasets": inv["datasets"], "uncompressed_bytes": inv["uncompressed_bytes"],
                 "stored_bytes": inv["stored_bytes"], "by_kind": inv["by_kind"]},
        **extra,
        "runs": runs,
        "ratios_baseline_s_over_variant_s": ratios,
        "ratio": {"demos_check": r_check, "demos_stats": r_stats},
        "target": f">= {TARGET}",
        "met": {"demos_check": r_check >= TARGET, "demos_stats": r_stats >= TARGET},
        **({"profiles": profiles} if profiles else {}),
    })
    print(f"results: {out}")
    print(f"RATIO demos_check: {r_check} (target >= {TARGET})")
    print(f"RATIO demos_stats: {r_stats} (target >= {TARGET})")


if __name__ == "__main__":
    main()
