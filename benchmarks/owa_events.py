"""OWA stage 1 (MCAP -> event dataset) throughput versus the bare ``mcap`` library.

Generates (once, reused by its parameters) a 10-minute recording of about one million
messages in the real current schemas (screen 60 Hz, mouse ~600 Hz, mouse/raw ~1000 Hz,
keyboard, state and window topics; ZSTD 1 MiB chunks) under
$ROBOCURATE_BENCH_DATA/owa-events, copies it to four files, then times in one run:

(a) bare ``mcap.reader.make_reader(f).iter_messages()`` over one file, in log-time order
    and in file order (``log_time_order=False``): iteration only, nothing decoded;
(b) ``extract_episode`` on that file (stage 1's per-file work: read, validate every kept
    topic's JSON, rate-limit, build rows, write the Arrow shard);
(c) ``build_event_dataset`` over the four files with 1 and with 2 worker processes
    (split, shards, join, ``save_to_disk``, atomic replace: the whole stage).

Targets (issue 6): >= 180,000 msg/s on one worker, >= 330,000 msg/s with two workers over
four files; each printed with its ratio to the bare library read of the same run.

    .venv/bin/python benchmarks/owa_events.py [--minutes 10] [--files 4]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from mcap.reader import make_reader  # noqa: E402

from robocurate.owa.events import build_event_dataset, extract_episode  # noqa: E402
from robocurate.samples.owa import write_recording  # noqa: E402

NAME = "owa_events"
TARGET_ONE, TARGET_TWO = 180_000, 330_000


def bare_read(path: Path, log_time_order: bool) -> tuple[int, float]:
    t = time.perf_counter()
    n = 0
    with open(path, "rb") as f:
        for _ in make_reader(f).iter_messages(log_time_order=log_time_order):
            n += 1
    return n, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--files", type=int, default=4)
    args = ap.parse_args()

    root = _common.BENCH_DATA / "owa-events"
    root.mkdir(parents=True, exist_ok=True)
    params = {"minutes": args.minutes, "screen_hz": 60.0, "mouse_hz": 600.0, "raw_hz": 1000.0,
              "seed": 0, "v": 1}
    src = root / "source.mcap"
    marker = root / _common.PARAMS_FILE
    key = json.dumps(params, sort_keys=True)
    gen_seconds = None
    if not (src.exists() and marker.is_file() and marker.read_text() == key):
        t = time.perf_counter()
        entry = write_recording(src, seconds=args.minutes * 60, seed=0, screen_hz=60.0,
                                mouse_hz=600.0, raw_hz=1000.0, shape=(1280, 720))
        gen_seconds = time.perf_counter() - t
        marker.write_text(key)
        print(f"generated {entry['messages']:,} messages ({src.stat().st_size / 1e6:.1f} MB) "
              f"in {gen_seconds:.1f} s: {entry['topics']}")
    work = root / "work"
    shutil.rmtree(work, ignore_errors=True)
    (work / "in").mkdir(parents=True)
    for i in range(args.files):
        shutil.copyfile(src, work / "in" / f"rec_{i}.mcap")
    one = work / "in" / "rec_0.mcap"
    _ = one.read_bytes()  # page cache warm for everyone

    n_log, s_log = bare_read(one, True)
    n_file, s_file = bare_read(one, False)
    bare_log, bare_file = n_log / s_log, n_file / s_file

    r = extract_episode(str(one), str(work / "one.arrow"))
    assert r["ok"], r["findings"]
    ex_rate = r["messages"] / r["seconds"]

    runs = {}
    for workers in (1, 2):
        out = work / f"events_w{workers}"
        t = time.perf_counter()
        res = build_event_dataset(work / "in", out, workers=workers)
        secs = time.perf_counter() - t
        assert res["summary"]["files skipped"] == 0, res["findings"]
        runs[workers] = {"seconds": round(secs, 3), "messages": res["summary"]["messages read"],
                         "rows": res["summary"]["train rows"] + res["summary"]["test rows"],
                         "msg_per_s": round(res["summary"]["messages read"] / secs)}

    rows = [
        ["mcap library, log-time order (1 file)", n_log, s_log, bare_log, 1.0, ""],
        ["mcap library, file order (1 file)", n_file, s_file, bare_file, bare_file / bare_log, ""],
        ["stage 1 extract_episode (1 file)", r["messages"], r["seconds"], ex_rate,
         ex_rate / bare_log, ""],
        [f"stage 1 build, 1 worker, {args.files} files", runs[1]["messages"], runs[1]["seconds"],
         runs[1]["msg_per_s"], runs[1]["msg_per_s"] / bare_log, f">= {TARGET_ONE:,}"],
        [f"stage 1 build, 2 workers, {args.files} files", runs[2]["messages"],
         runs[2]["seconds"], runs[2]["msg_per_s"], runs[2]["msg_per_s"] / bare_log,
         f">= {TARGET_TWO:,}"],
    ]
    print(_common.table(rows, ["run", "messages", "seconds", "msg/s", "x bare log-time",
                               "target"]))
    ok1, ok2 = runs[1]["msg_per_s"] >= TARGET_ONE, runs[2]["msg_per_s"] >= TARGET_TWO
    print(f"RATIO {NAME}: 1 worker {runs[1]['msg_per_s'] / bare_log:.2f}x / 2 workers "
          f"{runs[2]['msg_per_s'] / bare_log:.2f}x the bare mcap log-time read "
          f"({runs[1]['msg_per_s'] / bare_file:.2f}x / {runs[2]['msg_per_s'] / bare_file:.2f}x "
          f"file order); absolute targets met: 1 worker {'yes' if ok1 else 'NO'}, "
          f"2 workers {'yes' if ok2 else 'NO'} (shared machine: noisy)")
    out = _common.write_result(NAME, {
        "params": params, "files": args.files, "generation_seconds": gen_seconds,
        "bare_log_time": {"messages": n_log, "seconds": round(s_log, 3),
                          "msg_per_s": round(bare_log)},
        "bare_file_order": {"messages": n_file, "seconds": round(s_file, 3),
                            "msg_per_s": round(bare_file)},
        "extract_one_file": {"messages": r["messages"], "rows": r["rows"],
                             "seconds": r["seconds"], "msg_per_s": round(ex_rate)},
        "build_1_worker": runs[1], "build_2_workers": runs[2],
        "ratio_1_worker_vs_bare_log": round(runs[1]["msg_per_s"] / bare_log, 3),
        "ratio_2_workers_vs_bare_log": round(runs[2]["msg_per_s"] / bare_log, 3),
        "targets": {"one_worker": TARGET_ONE, "two_workers": TARGET_TWO},
        "targets_met": {"one_worker": ok1, "two_workers": ok2},
    })
    print(f"wrote {out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
