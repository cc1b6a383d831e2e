"""Contact indexing of one React episode vs h5py alone reading the same datasets.

Generates (once, reused by its parameters) a raw episode at real resolution with
``robocurate.samples.react.generate_react_dataset`` (480x640, BLOSC-LZ4 as recorded)
under $ROBOCURATE_BENCH_DATA/react-contact, then derives variants:

- ``generator/lz4``: the generator's file as written (smooth content, compresses ~15x);
- ``noisy/lz4``: the same frames + Gaussian sensor noise (sigma 2.5), BLOSC-LZ4: the
  noise makes the frames incompressible for LZ4, so HDF5 stores the chunks raw (filter
  skipped) and reading them is a plain copy, the cheapest read there is;
- ``noisy/gzip``: the noisy frames as GZIP-4 + shuffle (what the compression stage
  writes);
- ``legacy-gelsight/lz4``: the generator's frames with each GelSight row repeated over
  four camera ticks (75 % repeated rows, like the legacy recordings' ~8 fps GelSight in
  30 Hz rows, 71.8 % per reference 1.1), BLOSC-LZ4. Derived files hold only what contact
  indexing reads (no depth).

Per variant, after one warm-up read (page cache warm; ``--cold`` drops the page cache
before every timed run instead), alternating ``--repeat`` times:

(a) h5py alone: read + decompress the datasets ``index_episode`` reads (3 camera colour
    streams, 2 GelSight streams, timestamps, the sensor OptiTrack streams), in slices of
    ``--chunk-frames`` frames, one thread;
(b) ``index_episode(h5, out, device="cpu")`` end to end (read, thumbnails, metrics,
    torch.save + fsync + rename), writing a new ``.pt`` (the previous run's is deleted
    before the clock starts). One more run re-indexes over the existing ``.pt`` (the
    old file's blocks are freed on a thread, ``io.atomic.replace``), in its own column;
(c) for information: the indexer's own reader alone (``io.h5rows.RowReader``, chunks
    read at HDF5's offsets and decoded on one thread per CPU) over the same frames: the
    floor of (b), which is faster than (a) because decoding uses every core.

Prints frames/s and the ratio b/a (target <= 1.25, best of the repeats each), and a CUDA
row for (b) when torch sees a GPU.

    .venv/bin/python benchmarks/react_contact_index.py [--frames 600] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

import h5py  # noqa: E402
import hdf5plugin  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from robocurate.io.h5rows import RowReader  # noqa: E402
from robocurate.react.contact import index_episode  # noqa: E402
from robocurate.samples.react import generate_react_dataset  # noqa: E402

NAME = "react_contact_index"
TARGET = 1.25
FRAME_STREAMS = ["realsense/cam0/color", "realsense/cam1/color", "realsense/cam2/color",
                 "gelsight/left/frames", "gelsight/right/frames"]
SMALL = ["timestamps", *(f"optitrack/sensor_{s}/{k}" for s in ("left", "right")
                         for k in ("timestamps", "pose"))]


def generated_episode(root: Path, frames: int, height: int, width: int
                      ) -> tuple[Path, float | None]:
    params = dict(frames=frames, height=height, width=width, seed=0)
    marker = root / _common.PARAMS_FILE
    src = root / "data" / "motherboard" / "2026-06-01" / "episode_000.h5"
    if marker.is_file() and marker.read_text() == json.dumps(params) and src.is_file():
        return src, None
    if root.exists():
        shutil.rmtree(root)
    t = time.perf_counter()
    generate_react_dataset(root, episodes=1, with_faults=False, **params)
    marker.write_text(json.dumps(params))
    return src, time.perf_counter() - t


def derive(src: Path, dst: Path, *, codec: str, noise: float = 0.0, hold: int = 1) -> None:
    """Copy what contact indexing reads, re-encoded with ``codec``: with ``noise``, sensor
    noise added to every frame; with ``hold``, each GelSight row held for that many ticks."""
    if dst.is_file():
        return
    rng = np.random.default_rng(1)
    tmp = dst.with_suffix(".partial")
    filt = (dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))
            if codec == "lz4" else dict(compression="gzip", compression_opts=4, shuffle=True))
    with h5py.File(src, "r") as fi, h5py.File(tmp, "w") as fo:
        for name in SMALL + ["optitrack/motherboard/timestamps", "optitrack/motherboard/pose"]:
            fo.create_dataset(name, data=fi[name][()])
        for name in FRAME_STREAMS:
            ds = fi[name]
            out = fo.create_dataset(name, shape=ds.shape, dtype=np.uint8,
                                    chunks=(1,) + ds.shape[1:], **filt)
            for a in range(0, ds.shape[0], 32):
                x = ds[a:a + 32]
                if hold > 1 and name.startswith("gelsight/"):
                    rows = np.arange(a, a + len(x)) // hold * hold
                    x = ds[rows[0]:rows[-1] + 1][rows - rows[0]]
                if noise:
                    x = x.astype(np.int16)
                    x += rng.normal(0.0, noise, x.shape).round().astype(np.int16)
                    x = np.clip(x, 0, 255).astype(np.uint8)
                out[a:a + 32] = x
    os.replace(tmp, dst)


def h5py_read(path: Path, chunk_frames: int) -> float:
    t = time.perf_counter()
    with h5py.File(path, "r") as f:
        for name in SMALL:
            f[name][()]
        n = f["timestamps"].shape[0]
        for a in range(0, n, chunk_frames):
            for name in FRAME_STREAMS:
                f[name][a:a + chunk_frames]
    return time.perf_counter() - t


def rows_read(path: Path, chunk_frames: int) -> float:
    """(c): every frame stream read through RowReader, slices on one thread per CPU."""
    t = time.perf_counter()
    with h5py.File(path, "r") as f, ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        fd = os.dup(f.id.get_vfd_handle())
        try:
            readers = [RowReader(f[name], fd) for name in FRAME_STREAMS]
            local = threading.local()

            def read(rd: RowReader, a: int, b: int) -> None:
                buf = getattr(local, "buf", None)
                if buf is None or buf.shape[1:] != rd.row_shape:
                    buf = local.buf = np.empty((chunk_frames, *rd.row_shape), rd.dtype)
                rd.read_into(a, b, buf[:b - a])

            n = f["timestamps"].shape[0]
            list(pool.map(lambda job: read(*job), [(rd, a, min(a + chunk_frames, n))
                                                   for a in range(0, n, chunk_frames)
                                                   for rd in readers]))
        finally:
            os.close(fd)
    return time.perf_counter() - t


def indexed(path: Path, out: Path, chunk_frames: int, device: str, fresh: bool = True
            ) -> tuple[float, dict]:
    if fresh:  # a first index; replacing an old .pt also pays its deletion (timed apart)
        out.unlink(missing_ok=True)
    t = time.perf_counter()
    m = index_episode(path, out, device=device, chunk_frames=chunk_frames)
    seconds = time.perf_counter() - t
    if m["status"] != "indexed":
        sys.exit(f"index_episode failed on {path}: {m['findings']}")
    return seconds, m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--chunk-frames", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--variants",
                    default="generator/lz4,noisy/lz4,noisy/gzip,legacy-gelsight/lz4")
    ap.add_argument("--cold", action="store_true",
                    help="drop the page cache before every timed run (needs root; affects "
                         "the whole machine) instead of timing with a warm cache")
    args = ap.parse_args()

    root = _common.BENCH_DATA / "react-contact"
    src, gen_s = generated_episode(root / f"sample_f{args.frames}_{args.height}x{args.width}",
                                   args.frames, args.height, args.width)
    files = {"generator/lz4": src}
    for v in args.variants.split(","):
        if v.startswith("noisy/"):
            codec = v.split("/")[1]
            files[v] = root / f"noisy_{codec}_f{args.frames}_{args.height}x{args.width}.h5"
            derive(src, files[v], codec=codec, noise=2.5)
        elif v == "legacy-gelsight/lz4":
            files[v] = root / f"legacy_gelsight_f{args.frames}_{args.height}x{args.width}.h5"
            derive(src, files[v], codec="lz4", hold=4)
    out_dir = root / "out"
    out_dir.mkdir(exist_ok=True)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

    rows, results = [], []
    for v in args.variants.split(","):
        path = files[v]
        if not args.cold:
            h5py_read(path, args.chunk_frames)  # warm the page cache: both read from RAM

        def cache():
            if args.cold and not _common.drop_caches():
                sys.exit("--cold needs permission to write /proc/sys/vm/drop_caches")

        a_runs, b_runs, c_runs = [], {d: [] for d in devices}, []
        manifest = None
        for _ in range(args.repeat):
            cache()
            a_runs.append(h5py_read(path, args.chunk_frames))
            cache()
            c_runs.append(rows_read(path, args.chunk_frames))
            for d in devices:
                cache()
                s, manifest = indexed(path, out_dir / f"{v.replace('/', '_')}.pt",
                                      args.chunk_frames, d)
                b_runs[d].append(s)
        a, c = min(a_runs), min(c_runs)
        n = manifest["frames"]
        for d in devices:
            b = min(b_runs[d])
            cache()
            over, _ = indexed(path, out_dir / f"{v.replace('/', '_')}.pt",
                              args.chunk_frames, d, fresh=False)
            rows.append([v, d, round(path.stat().st_size / 2**20), n, a, n / a, b, n / b,
                         b / a, over, c, b / c])
            results.append(dict(variant=v, device=d, file_mb=path.stat().st_size / 2**20,
                                frames=n, h5py_s=a_runs, index_s=b_runs[d], reader_s=c_runs,
                                h5py_fps=n / a, index_fps=n / b, ratio=b / a,
                                reindex_over_existing_pt_s=over, index_over_reader=b / c))

    print(f"\nContact indexing vs h5py read ({args.frames} frames, {args.height}x{args.width}, "
          f"chunk {args.chunk_frames}, best of {args.repeat}, "
          f"{'cold' if args.cold else 'warm'} page cache; {os.cpu_count()} CPUs"
          f"{', generated in %.0f s' % gen_s if gen_s else ''})")
    print(_common.table(rows, ["variant", "device", "MB", "frames", "h5py s", "h5py fps",
                               "index s", "index fps", "ratio b/a", "over old .pt s",
                               "reader s", "b/c"]))
    print(f"target ratio <= {TARGET} (end-to-end / h5py alone, writing a new .pt); 'over old "
          ".pt' re-indexes over the existing .pt; 'reader s' is the indexer's reader alone")
    out = _common.write_result(NAME, {"params": vars(args), "target_ratio": TARGET,
                                      "results": results})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
