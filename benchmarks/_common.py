"""Shared helpers of the benchmark scripts (not a benchmark itself).

Each script in this directory is run as ``.venv/bin/python benchmarks/<name>.py``; this
module is imported from them with the repository root put on ``sys.path`` first.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
BENCH_DATA = Path(os.environ.get("ROBOCURATE_BENCH_DATA", "/work/bench-data"))
PARAMS_FILE = ".bench-params.json"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def machine_info() -> dict:
    info = {
        "nproc": os.cpu_count(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        info["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            info["mem_total_kb"] = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        import h5py
        import numpy
        info["h5py"] = h5py.__version__
        info["hdf5"] = h5py.version.hdf5_version
        info["numpy"] = numpy.__version__
    except ImportError:
        pass
    return info


def code_info() -> dict:
    """Which code was measured: the checked-out commit and robocurate's source digest
    (other files may be edited while benchmarks run)."""
    out = {"git_head": git_rev()}
    try:
        from robocurate.io.digest import code_version
        out["robocurate_code_version"] = code_version()
    except Exception:  # noqa: BLE001
        pass
    return out


def steal_seconds() -> float:
    """CPU time stolen by the hypervisor so far (all CPUs), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def drop_caches() -> bool:
    """Drop the page cache (needs root); True when the kernel accepted it."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def tree_bytes(root: Path, pattern: str = "*.h5") -> int:
    return sum(p.stat().st_size for p in Path(root).rglob(pattern) if p.is_file())


def ensure_dataset(path: Path, params: dict, reuse: bool = True) -> tuple[Path, float | None]:
    """Generate a MolmoSpaces sample at ``path`` unless one with the same ``params``
    is already there. Returns (path, generation seconds or None when reused)."""
    from robocurate.samples.molmo import generate_molmo_dataset

    path = Path(path)
    marker = path / PARAMS_FILE
    key = json.dumps(params, sort_keys=True)
    if reuse and marker.is_file() and marker.read_text() == key:
        return path, None
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kw = dict(params)
    if "steps" in kw:
        kw["steps"] = tuple(kw["steps"])
    t0 = time.perf_counter()
    generate_molmo_dataset(path, **kw)
    seconds = time.perf_counter() - t0
    marker.write_text(key)
    return path, seconds


def fresh_copy(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    data = {"benchmark": name, "machine": machine_info(), "code": code_info(), **payload}
    out.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return out


def table(rows: list[list], header: list[str]) -> str:
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for j, r in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths))))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(c) -> str:
    if isinstance(c, float):
        return f"{c:.3f}" if abs(c) < 10 else f"{c:.1f}"
    return str(c)


def git_rev() -> str | None:
    """The checked-out commit, read from .git without running git."""
    head = REPO / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            p = REPO / ".git" / ref[5:]
            if p.is_file():
                return p.read_text().strip()
            packed = REPO / ".git" / "packed-refs"
            for line in packed.read_text().splitlines():
                if line.endswith(ref[5:]):
                    return line.split()[0]
            return None
        return ref
    except OSError:
        return None


def venv_bin(name: str) -> str:
    cand = REPO / ".venv" / "bin" / name
    return str(cand) if cand.exists() else shutil.which(name) or name


def run_cmd(args, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True)
