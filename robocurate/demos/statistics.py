"""Dataset statistics of demonstration files, streamed demo by demo.

Per file: demo and success counts, episode lengths, float64 mergeable statistics of
actions and every low-dimensional observation, per-channel image statistics from
sampled frames, and total tactile force per step where tactile observations exist.
Files merge exactly (Chan's algorithm) into one dataset summary. Quantiles need the
values themselves: each file's low-dimensional values are written to a ``.npy`` per key
(``values_dir``), and the merge reads them back, so q01/q99 are exact too.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np

from robocurate.demos.layout import demo_keys, detect_schema, iter_datasets, obs_group
from robocurate.findings import Findings
from robocurate.io.atomic import atomic_write_bytes
from robocurate.stats import RunningStats, merge_all

QUANTILES = (0.01, 0.99)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "__", name)


def _per_step_datasets(demo: h5py.Group, schema: str):
    """(key, dataset) for actions and every observation dataset, keys like ``obs/eef_pos``."""
    if isinstance(demo.get("actions"), h5py.Dataset):
        yield "actions", demo["actions"]
    obs = obs_group(demo, schema)
    if obs is not None:
        prefix = obs.name.rsplit("/", 1)[-1] + "/"
        yield from iter_datasets(obs, prefix)


def _is_tactile(key: str, ds: h5py.Dataset) -> bool:
    return "tactile" in key.lower() and ds.ndim == 4 and ds.dtype.kind in "iuf"


def file_stats(path: str | Path, values_dir: str | Path, schema: str = "auto",
               image_frames_per_demo: int = 4) -> dict:
    """Statistics of one file as a small manifest; low-dim values go to ``values_dir``."""
    path, values_dir = Path(path), Path(values_dir)
    findings = Findings()
    out = {"path": str(path), "status": "ok", "schema": schema, "demos": 0, "with_success": 0,
           "successes": 0, "lengths": [], "keys": {}, "images": {}, "tactile": {},
           "values": {}}
    values: dict[str, list[np.ndarray]] = {}
    stats: dict[str, list[RunningStats]] = {}
    images: dict[str, list[RunningStats]] = {}
    tactile: dict[str, list[RunningStats]] = {}
    try:
        with h5py.File(path, "r") as f:
            out["schema"] = schema = detect_schema(f) if schema == "auto" else schema
            data = f.get("data")
            if not isinstance(data, h5py.Group):
                findings.add(path, "no_data_group", "no 'data' group")
                data = {}
            for key in demo_keys(data) if data else []:
                demo = data[key]
                if not isinstance(demo, h5py.Group):
                    continue
                out["demos"] += 1
                if "success" in demo.attrs:
                    out["with_success"] += 1
                    out["successes"] += bool(np.asarray(demo.attrs["success"]).ravel()[0])
                force_total, tactile_keys = None, 0
                for name, ds in _per_step_datasets(demo, schema):
                    if ds.dtype.kind not in "biuf" or ds.ndim == 0 or ds.shape[0] == 0:
                        continue
                    if name == "actions":
                        out["lengths"].append(int(ds.shape[0]))
                    if ds.dtype == np.uint8 and ds.ndim == 4:
                        idx = np.unique(np.linspace(0, ds.shape[0] - 1,
                                                    min(image_frames_per_demo, ds.shape[0])
                                                    ).round().astype(int))
                        # One read per frame: h5py's fancy indexing costs ~15x more here.
                        frames = np.stack([ds[int(i)] for i in idx])
                        images.setdefault(name, []).append(
                            RunningStats.from_array(frames.reshape(-1, frames.shape[-1])))
                    elif _is_tactile(name, ds):
                        force = ds[..., 0].sum(axis=(1, 2), dtype=np.float64)
                        tactile.setdefault(name, []).append(RunningStats.from_array(force))
                        if force_total is None:
                            force_total, tactile_keys = force, 1
                        elif len(force) == len(force_total):
                            force_total, tactile_keys = force_total + force, tactile_keys + 1
                    elif ds.ndim <= 2:
                        arr = np.asarray(ds[()], dtype=np.float64).reshape(ds.shape[0], -1)
                        finite = np.isfinite(arr).all(axis=1)
                        if not finite.all():
                            findings.add(path, "non_finite_skipped",
                                         f"{name}: {int((~finite).sum())} rows with NaN/Inf left "
                                         "out of the statistics", item=key, severity="warning")
                            arr = arr[finite]
                        if len(arr):
                            stats.setdefault(name, []).append(RunningStats.from_array(arr))
                            values.setdefault(name, []).append(arr)
                # The seed's total force: left + right per step, when a demo has both.
                if tactile_keys > 1:
                    tactile.setdefault("total", []).append(RunningStats.from_array(force_total))
    except OSError as exc:
        findings.add(path, "unreadable_file", f"cannot read HDF5 file: {exc}")
        out["status"] = "unreadable"

    for name, parts in stats.items():
        merged = merge_all(parts)
        out["keys"][name] = merged.to_state()
        target = values_dir / f"{_safe(name)}.npy"
        buf = _npy_bytes(np.concatenate(values[name]))
        atomic_write_bytes(target, buf)
        out["values"][name] = str(target)
    out["images"] = {k: merge_all(v).to_state() for k, v in images.items()}
    out["tactile"] = {k: merge_all(v).to_state() for k, v in tactile.items()}
    out["findings"] = findings.to_list()
    return out


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _summary(st: RunningStats) -> dict:
    return {"mean": st.mean.tolist(), "std": st.std.tolist(), "min": st.min.tolist(),
            "max": st.max.tolist(), "count": st.count}


def merge_file_stats(manifests: list[dict]) -> dict:
    """One dataset summary from per-file manifests (exact in float64)."""
    ok = [m for m in manifests if m["status"] == "ok"]
    lengths = np.array([n for m in ok for n in m["lengths"]], dtype=np.int64)
    with_success = sum(m["with_success"] for m in ok)
    successes = sum(m["successes"] for m in ok)
    result = {
        "files": len(manifests),
        "unreadable_files": [m["path"] for m in manifests if m["status"] != "ok"],
        "demos": sum(m["demos"] for m in ok),
        "successes": successes,
        "success_rate": successes / with_success if with_success else None,
        "total_steps": int(lengths.sum()),
        "episode_length": _length_summary(lengths),
        "keys": {},
        "images": {},
        "tactile": {},
    }
    for name in sorted({k for m in ok for k in m["keys"]}):
        merged = merge_all(RunningStats.from_state(m["keys"][name]) for m in ok
                           if name in m["keys"])
        record = _summary(merged)
        arrays = [np.load(m["values"][name]) for m in ok if name in m["values"]]
        all_values = np.concatenate(arrays)
        q = np.quantile(all_values, QUANTILES, axis=0)
        record["q01"], record["q99"] = q[0].tolist(), q[1].tolist()
        result["keys"][name] = record
    for field in ("images", "tactile"):
        for name in sorted({k for m in ok for k in m[field]}):
            merged = merge_all(RunningStats.from_state(m[field][name]) for m in ok
                               if name in m[field])
            result[field][name] = _summary(merged)
    return result


def _length_summary(lengths: np.ndarray) -> dict:
    if len(lengths) == 0:
        return {}
    edges = np.histogram_bin_edges(lengths, bins=min(10, len(np.unique(lengths))))
    counts, _ = np.histogram(lengths, bins=edges)
    return {"min": int(lengths.min()), "max": int(lengths.max()),
            "mean": float(lengths.mean()), "std": float(lengths.std()),
            "median": float(np.median(lengths)),
            "histogram": {"edges": edges.tolist(), "counts": counts.tolist()}}
