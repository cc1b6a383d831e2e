"""Synthetic Open World Agents desktop recordings (OWAMcap + MKV), plus broken ones.

Each recording ``rec_NNN.mcap`` is written as OWA's recorder writes it (reference
``react-tactile-and-owa.md`` 2.1): header profile ``owa``, one ``jsonschema`` schema per
message type (name = type, data = a JSON schema whose ``properties`` are the type's
fields), one ``json`` channel per topic, ZSTD chunks of 1 MiB with CRCs, log time =
publish time = the event's ns timestamp. Topics and rates of a typical game session:

=================  ===========================  ==================================
topic              type                         rate
=================  ===========================  ==================================
``screen``         desktop/ScreenCaptured       ``screen_hz`` (20 Hz default)
``mouse``          desktop/MouseEvent           ~600 Hz moves, clicks and scrolls
``mouse/raw``      desktop/RawMouseEvent        ~1000 Hz relative deltas
``keyboard``       desktop/KeyboardEvent        ~8 Hz press/release pairs
``keyboard/state`` desktop/KeyboardState        1 Hz
``mouse/state``    desktop/MouseState           1 Hz
``window``         desktop/WindowInfo           1 Hz
=================  ===========================  ==================================

so ten minutes hold about one million messages (the issue-6 benchmark recording).

With ``with_video`` a ``rec_NNN.mkv`` is written next to it (PyAV, H.264, time base
1/1000): screen event ``k`` has ``media_ref = {"uri": "rec_NNN.mkv", "pts_ns": k *
frame_ns}`` and the video's frame ``k`` has exactly that pts. Frame ``k`` is a flat grey
of level ``frame_level(k)`` (so a decoder can check it got the right frame) with a small
moving white square.

``generations`` adds one recording per legacy schema generation ("0.1", "0.3", "0.4"),
with the old type names and payload fields, to exercise normalisation.

With ``with_faults`` these follow, each labelled in the manifest with the finding rule a
correct reader reports (``expected.rule``):

- ``bad_magic.mcap``: first bytes overwritten -> ``bad_magic``;
- ``truncated.mcap``: a recording cut at 40 % (inside its first chunk) -> ``truncated``;
- ``crc_mismatch.mcap``: uncompressed chunks, one payload digit changed (the JSON stays
  valid, only the chunk CRC betrays it) -> ``crc_mismatch``;
- ``unknown_schema.mcap``: the mouse topic typed ``desktop/MouseEventV9`` -> ``unknown_schema``;
- ``bad_json.mcap``: one keyboard payload cut in half -> ``bad_json``;
- ``no_screen.mcap``: a recording without a screen topic -> ``no_screen_topic``.

``sample_manifest.json``: per file ``path``, ``video`` (or null), ``generation``,
``messages``, ``topics`` (counts), ``start_ns``/``end_ns``, ``expected {ok, rule}``.

Pure library: no Prefect.
"""

from __future__ import annotations

import json
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
from mcap.writer import CompressionType, Writer

from robocurate.io.atomic import atomic_open, atomic_write_bytes

__all__ = ["FAULTS", "MANIFEST_NAME", "frame_level", "generate_owa_recordings",
           "write_recording"]

MANIFEST_NAME = "sample_manifest.json"
MANIFEST_SCHEMA = "robocurate.samples.owa/1"
START_NS = 1_751_017_792_000_000_000  # 2025-06-27, like the docs example
FAULTS = {
    "bad_magic": "bad_magic",
    "truncated": "truncated",
    "crc_mismatch": "crc_mismatch",
    "unknown_schema": "unknown_schema",
    "bad_json": "bad_json",
    "no_screen": "no_screen_topic",
}

# type name -> field names, per generation (the JSON schema's "properties").
_CURRENT = {
    "desktop/ScreenCaptured": ["utc_ns", "source_shape", "shape", "media_ref"],
    "desktop/MouseEvent": ["event_type", "x", "y", "button", "pressed", "dx", "dy", "timestamp"],
    "desktop/RawMouseEvent": ["last_x", "last_y", "us_flags", "button_flags", "button_data",
                              "device_handle", "timestamp"],
    "desktop/KeyboardEvent": ["event_type", "vk", "timestamp"],
    "desktop/KeyboardState": ["buttons", "timestamp"],
    "desktop/MouseState": ["x", "y", "buttons", "timestamp"],
    "desktop/WindowInfo": ["title", "rect", "hWnd"],
}
_TOPIC_TYPE = {"screen": "ScreenCaptured", "mouse": "MouseEvent", "mouse/raw": "RawMouseEvent",
               "keyboard": "KeyboardEvent", "keyboard/state": "KeyboardState",
               "mouse/state": "MouseState", "window": "WindowInfo"}
# generation -> (type name of class, legacy screen layout)
_GENERATIONS = {
    "0.1": lambda cls: ("owa_env_gst.msg.ScreenEmitted" if cls == "ScreenCaptured"
                        else f"owa_env_desktop.msg.{cls}"),
    "0.3": lambda cls: ("owa.env.gst.msg.ScreenEmitted" if cls == "ScreenCaptured"
                        else f"owa.env.desktop.msg.{cls}"),
    "0.4": lambda cls: f"desktop/{cls}",
    "0.5": lambda cls: f"desktop/{cls}",
}


def frame_level(k: int) -> int:
    """Grey level of video frame k (distinct for neighbouring frames, codec-safe range)."""
    return 40 + (k * 37) % 176


def _schema_doc(name: str, fields: list[str]) -> bytes:
    title = name.rsplit("/", 1)[-1].rsplit(".", 1)[-1]
    doc = {"properties": {f: {"title": f.replace("_", " ").title()} for f in fields},
           "title": title, "type": "object"}
    return json.dumps(doc, separators=(",", ":")).encode()


def _fields(generation: str, cls: str) -> list[str]:
    fields = list(_CURRENT[f"desktop/{cls}"])
    if cls == "ScreenCaptured" and generation in ("0.1", "0.3"):
        return ["path", "pts", "utc_ns"]
    if cls == "ScreenCaptured" and generation == "0.4":
        return ["utc_ns", "original_shape", "shape", "path", "pts"]
    if cls == "KeyboardState" and generation == "0.1":
        return ["pressed_vk_list"]
    if generation in ("0.1", "0.3"):
        fields = [f for f in fields if f != "timestamp"]
    return fields


def _times(rng, t0: int, t1: int, hz: float, jitter: float = 0.25) -> np.ndarray:
    n = max(1, int((t1 - t0) * hz / 1e9))
    step = 1e9 / hz
    t = t0 + (np.arange(n) * step + rng.uniform(0, jitter * step, n)).astype(np.int64)
    return t[t <= t1]


class _Events:
    """All messages of one recording as parallel lists, sorted by time."""

    def __init__(self):
        self.times, self.topics, self.payloads = [], [], []

    def add(self, topic: str, times, payloads) -> None:
        self.times.append(np.asarray(times, np.int64))
        self.topics.append(np.full(len(times), topic, dtype=object))
        self.payloads.append(np.asarray(payloads, dtype=object))

    def sorted(self):
        t = np.concatenate(self.times)
        order = np.argsort(t, kind="stable")
        return (t[order].tolist(), np.concatenate(self.topics)[order].tolist(),
                np.concatenate(self.payloads)[order].tolist())


def _build_events(rng, *, seconds: float, screen_hz: float, generation: str, video_uri: str,
                  shape: tuple[int, int], with_screen: bool, mouse_hz: float,
                  raw_hz: float, start_ns: int):
    t0 = start_ns
    t1 = t0 + int(seconds * 1e9)
    ev = _Events()
    counts = {}
    w, h = shape
    if with_screen:
        frame_ns = int(round(1e9 / screen_hz / 1e6)) * 1_000_000  # whole ms: MKV time base
        n = max(1, int(seconds * 1e9 // frame_ns))
        k = np.arange(n, dtype=np.int64)
        pts = k * frame_ns
        # capture -> log latency of 1-4 ms, as the recorder's pipeline adds
        log_t = t0 + 5_000_000 + pts + rng.integers(1_000_000, 4_000_000, n)
        utc = log_t - rng.integers(500_000, 1_500_000, n)
        if generation in ("0.1", "0.3"):
            pay = [b'{"path":"%s","pts":%d,"utc_ns":%d}' % (video_uri.encode(), p, u)
                   for p, u in zip(pts.tolist(), utc.tolist())]
        elif generation == "0.4":
            pay = [b'{"utc_ns":%d,"original_shape":[%d,%d],"shape":[%d,%d],"path":"%s","pts":%d}'
                   % (u, w, h, w, h, video_uri.encode(), p)
                   for p, u in zip(pts.tolist(), utc.tolist())]
        else:
            pay = [b'{"utc_ns":%d,"source_shape":[%d,%d],"shape":[%d,%d],"media_ref":'
                   b'{"uri":"%s","pts_ns":%d}}' % (u, w, h, w, h, video_uri.encode(), p)
                   for p, u in zip(pts.tolist(), utc.tolist())]
        ev.add("screen", log_t, pay)
        counts["screen"] = n
    # mouse: a smooth path with clicks and the odd scroll
    mt = _times(rng, t0, t1, mouse_hz)
    n = len(mt)
    x = np.clip(w // 2 + np.cumsum(rng.integers(-3, 4, n)), 0, w - 1).tolist()
    y = np.clip(h // 2 + np.cumsum(rng.integers(-3, 4, n)), 0, h - 1).tolist()
    kind = rng.random(n)
    with_ts = generation in ("0.4", "0.5")
    pay = []
    for i in range(n):
        if kind[i] < 0.004:
            pressed = "true" if (i % 2 == 0) else "false"
            pay.append(b'{"event_type":"click","x":%d,"y":%d,"button":"left","pressed":%s}'
                       % (x[i], y[i], pressed.encode()))
        elif kind[i] < 0.006:
            pay.append(b'{"event_type":"scroll","x":%d,"y":%d,"dx":0,"dy":%d}'
                       % (x[i], y[i], 1 if i % 3 else -1))
        else:
            pay.append(b'{"event_type":"move","x":%d,"y":%d}' % (x[i], y[i]))
    ev.add("mouse", mt, pay)
    counts["mouse"] = n
    if raw_hz > 0 and generation == "0.5":
        rt = _times(rng, t0, t1, raw_hz)
        dx = rng.integers(-6, 7, len(rt)).tolist()
        dy = rng.integers(-6, 7, len(rt)).tolist()
        pay = [b'{"last_x":%d,"last_y":%d,"us_flags":0,"button_flags":0,"button_data":0,'
               b'"device_handle":65539,"timestamp":%d}' % (a, b, t)
               for a, b, t in zip(dx, dy, rt.tolist())]
        ev.add("mouse/raw", rt, pay)
        counts["mouse/raw"] = len(rt)
    # keyboard: press/release pairs 60-150 ms apart
    kt = _times(rng, t0, t1, 4.0, jitter=0.9)
    vks = rng.choice([65, 68, 83, 87, 32, 16], len(kt)).tolist()
    times, pay = [], []
    for t, vk in zip(kt.tolist(), vks):
        times += [t, t + int(rng.integers(60_000_000, 150_000_000))]
        tail = b',"timestamp":%d' % t if with_ts else b""
        pay += [b'{"event_type":"press","vk":%d%s}' % (vk, tail),
                b'{"event_type":"release","vk":%d%s}' % (vk, tail)]
    ev.add("keyboard", times, pay)
    counts["keyboard"] = len(times)
    st = _times(rng, t0, t1, 1.0, jitter=0.05)
    key = b"pressed_vk_list" if generation == "0.1" else b"buttons"
    ev.add("keyboard/state", st, [b'{"%s":[]}' % key] * len(st))
    ev.add("mouse/state", st, [b'{"x":%d,"y":%d,"buttons":[]}' % (w // 2, h // 2)] * len(st))
    ev.add("window", st, [b'{"title":"Super Hexagon","rect":[0,0,%d,%d],"hWnd":7800890}'
                          % (w, h)] * len(st))
    counts.update({"keyboard/state": len(st), "mouse/state": len(st), "window": len(st)})
    return ev.sorted(), counts


def write_recording(path: str | os.PathLike, *, seconds: float = 10.0, seed: int = 0,
                    screen_hz: float = 20.0, mouse_hz: float = 600.0, raw_hz: float = 1000.0,
                    generation: str = "0.5", video: bool = False, shape=(64, 48),
                    with_screen: bool = True, type_override: dict | None = None,
                    compression: str = "zstd", start_ns: int = START_NS) -> dict:
    """Write one recording (and its MKV when ``video``); returns its manifest entry."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    uri = path.with_suffix(".mkv").name
    (times, topics, payloads), counts = _build_events(
        rng, seconds=seconds, screen_hz=screen_hz, generation=generation, video_uri=uri,
        shape=shape, with_screen=with_screen, mouse_hz=mouse_hz, raw_hz=raw_hz,
        start_ns=start_ns)
    version = {"0.1": "0.1.0", "0.3": "0.3.2", "0.4": "0.4.2", "0.5": "0.5.1"}[generation]
    with atomic_open(path) as f:
        writer = Writer(f, compression=CompressionType.ZSTD if compression == "zstd"
                        else CompressionType.NONE)
        writer.start(profile="owa", library=f"mcap-owa-support {version}; mcap 1.3.0")
        channel_of = {}
        for topic in counts:
            cls = _TOPIC_TYPE[topic]
            name = (type_override or {}).get(topic) or _GENERATIONS[generation](cls)
            sid = writer.register_schema(name=name, encoding="jsonschema",
                                         data=_schema_doc(name, _fields(generation, cls)))
            channel_of[topic] = writer.register_channel(topic=topic, message_encoding="json",
                                                        schema_id=sid)
        add = writer.add_message
        seq = 0
        for t, topic, data in zip(times, topics, payloads):
            add(channel_of[topic], t, data, t, seq)
            seq += 1
        writer.finish()
    entry = {"path": path.name, "video": None, "generation": generation,
             "messages": len(times), "topics": counts, "start_ns": times[0],
             "end_ns": times[-1], "expected": {"ok": True, "rule": None}}
    if video and with_screen:
        _write_video(path.with_suffix(".mkv"), counts["screen"], screen_hz, shape)
        entry["video"] = uri
    return entry


def _write_video(path: Path, frames: int, hz: float, shape) -> None:
    import av

    w, h = shape
    frame_ms = int(round(1000 / hz))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".mkv", dir=path.parent)
    os.close(fd)
    try:
        with av.open(tmp, "w", format="matroska") as out:
            stream = out.add_stream("libx264", rate=Fraction(1000, frame_ms))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.time_base = Fraction(1, 1000)
            stream.options = {"crf": "18", "g": "10", "bf": "0"}
            for k in range(frames):
                img = np.full((h, w, 3), frame_level(k), np.uint8)
                sx = (k * 2) % max(1, w - 8)
                img[4:12, sx:sx + 8] = 255
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts, frame.time_base = k * frame_ms, Fraction(1, 1000)
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _faults(out: Path, rng, seconds: float, screen_hz: float) -> list[dict]:
    entries = []

    def fault(name: str, **kw) -> dict:
        e = write_recording(out / f"{name}.mcap", seconds=seconds, seed=int(rng.integers(1 << 30)),
                            screen_hz=screen_hz, mouse_hz=50.0, raw_hz=0.0, **kw)
        e["expected"] = {"ok": False, "rule": FAULTS[name]}
        entries.append(e)
        return e

    e = fault("bad_magic")
    p = out / e["path"]
    data = bytearray(p.read_bytes())
    data[:8] = b"PK\x03\x04\x00\x00\x00\x00"
    atomic_write_bytes(p, bytes(data))

    e = fault("truncated")
    p = out / e["path"]
    data = p.read_bytes()
    atomic_write_bytes(p, data[:int(len(data) * 0.4)])

    e = fault("crc_mismatch", compression="none")
    p = out / e["path"]
    data = bytearray(p.read_bytes())
    i = data.index(b'"event_type":"move","x":', len(data) // 3) + len(b'"event_type":"move","x":')
    data[i] = ord("1") if data[i] != ord("1") else ord("2")  # still valid JSON
    atomic_write_bytes(p, bytes(data))

    fault("unknown_schema", type_override={"mouse": "desktop/MouseEventV9"})

    # bad JSON: re-encoded through the library, so every CRC is right.
    e = fault("bad_json")
    _rewrite_payload(out / e["path"], b'{"event_type":"press","vk":', b'{"event_type":"pre')
    fault("no_screen", with_screen=False)
    return entries


def _rewrite_payload(path: Path, prefix: bytes, replacement: bytes) -> None:
    """Re-encode ``path`` with the first payload starting with ``prefix`` replaced; the
    file stays structurally perfect (CRCs recomputed) so only JSON parsing can object."""
    from mcap.reader import make_reader

    with open(path, "rb") as f:
        reader = make_reader(f)
        header = reader.get_header()
        summary = reader.get_summary()
        msgs = [(c.id, m.log_time, m.data, m.publish_time, m.sequence)
                for _s, c, m in reader.iter_messages(log_time_order=False)]
    with atomic_open(path) as f:
        w = Writer(f)
        w.start(profile=header.profile, library=header.library)
        ids = {}
        for s in summary.schemas.values():
            ids[s.id] = w.register_schema(s.name, s.encoding, s.data)
        chans = {}
        for c in summary.channels.values():
            chans[c.id] = w.register_channel(c.topic, c.message_encoding, ids[c.schema_id])
        done = False
        for cid, t, data, pt, seq in msgs:
            if not done and data.startswith(prefix):
                data, done = replacement, True
            w.add_message(chans[cid], t, data, pt, seq)
        w.finish()


def generate_owa_recordings(out: str | os.PathLike, *, files: int = 2, minutes: float = 0.1,
                            seed: int = 0, with_video: bool = True, with_faults: bool = True,
                            generations: tuple[str, ...] = (), screen_hz: float = 20.0,
                            mouse_hz: float = 600.0, raw_hz: float = 1000.0,
                            shape: tuple[int, int] = (64, 48)) -> dict:
    """Write ``files`` current-schema recordings of ``minutes`` each (plus one per legacy
    generation and the labelled faults) under ``out``; returns the manifest, also
    written to ``out/sample_manifest.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    seconds = minutes * 60.0
    entries = []
    for i in range(files):
        entries.append(write_recording(
            out / f"rec_{i:03d}.mcap", seconds=seconds, seed=int(rng.integers(1 << 30)),
            screen_hz=screen_hz, mouse_hz=mouse_hz, raw_hz=raw_hz, video=with_video,
            shape=shape, start_ns=START_NS + i * 3_600_000_000_000))
    for g in generations:
        if g not in _GENERATIONS:
            raise ValueError(f"unknown generation {g!r}; choose from {sorted(_GENERATIONS)}")
        entries.append(write_recording(
            out / f"legacy_{g.replace('.', '_')}.mcap", seconds=min(seconds, 5.0),
            seed=int(rng.integers(1 << 30)), screen_hz=screen_hz, mouse_hz=min(mouse_hz, 100),
            raw_hz=0.0, generation=g, video=with_video, shape=shape))
    if with_faults:
        entries += _faults(out, rng, min(seconds, 3.0), screen_hz)
    manifest = {"schema": MANIFEST_SCHEMA, "seed": seed, "minutes": minutes,
                "screen_hz": screen_hz, "files": entries}
    atomic_write_bytes(out / MANIFEST_NAME,
                       (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    return manifest
