"""OWAMcap reading: every schema generation of the real files, log-time order, corruption."""

import json
from pathlib import Path

import orjson
import pytest
from mcap.reader import make_reader
from mcap.writer import Writer

from robocurate.owa.mcapread import McapCorrupt, OwaMcapReader, read_messages
from robocurate.owa.schemas import CURRENT_TYPES, UnknownSchema, current_name, resolve_schema
from robocurate.samples.owa import FAULTS, generate_owa_recordings

DATA = Path(__file__).resolve().parent.parent / "data" / "owa-mcap"
REAL = {  # file -> (messages, generation), counts from PROVENANCE.txt
    "example.mcap": (864, "0.5"),
    "0.5.1.mcap": (267, "0.5"),
    "0.4.2.mcap": (619, "0.4"),
    "0.3.2.mcap": (669, "0.3"),
    "old-docs-example-21015.mcap": (518, "0.3"),
    "old-recorder-example-65526.mcap": (2124, "0.1"),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_files_read_with_current_names(name):
    rows = list(read_messages(DATA / name))
    assert len(rows) == REAL[name][0]
    stamps = [t for _, t, _, _ in rows]
    assert stamps == sorted(stamps)
    assert {mt for _, _, mt, _ in rows} <= CURRENT_TYPES
    for topic, _, mt, data in rows:
        payload = orjson.loads(data)
        if topic == "screen":
            assert mt == "desktop/ScreenCaptured"
            assert set(payload) <= {"utc_ns", "source_shape", "shape", "media_ref"}
            assert set(payload["media_ref"]) == {"uri", "pts_ns"}
            assert payload["media_ref"]["uri"].endswith(".mkv")
        if topic == "keyboard/state":
            assert mt == "desktop/KeyboardState" and "buttons" in payload
            assert "pressed_vk_list" not in payload


def test_same_messages_as_the_mcap_library_in_log_time_order():
    with open(DATA / "example.mcap", "rb") as f:
        lib = [(c.topic, m.log_time, s.name, m.data)
               for s, c, m in make_reader(f).iter_messages(log_time_order=True)]
    assert list(read_messages(DATA / "example.mcap")) == lib


def test_legacy_screen_payloads_are_normalised():
    first = {}
    for name in ("0.3.2.mcap", "0.4.2.mcap", "0.5.1.mcap"):
        first[name] = next(d for t, _, _, d in read_messages(DATA / name) if t == "screen")
    assert orjson.loads(first["0.3.2.mcap"]) == {
        "utc_ns": 1750427723476384500, "media_ref": {"uri": "0.3.2.mkv", "pts_ns": 10000000}}
    # key order as the current writer emits it
    assert first["0.4.2.mcap"] == (b'{"utc_ns":1750433842697368400,"source_shape":[906,578],'
                                   b'"shape":[906,578],"media_ref":{"uri":"0.4.2.mkv",'
                                   b'"pts_ns":20000000}}')
    # current generation: bytes untouched
    assert first["0.5.1.mcap"] == (b'{"utc_ns":1768131731227929100,"source_shape":[1025,1017],'
                                   b'"shape":[1025,1017],"media_ref":{"uri":"0.5.1.mkv",'
                                   b'"pts_ns":0}}')
    old = next(d for t, _, _, d in read_messages(DATA / "old-recorder-example-65526.mcap")
               if t == "keyboard/state")
    assert orjson.loads(old) == {"buttons": []}


def test_schema_names_of_every_generation():
    assert current_name("owa_env_gst.msg.ScreenEmitted") == "desktop/ScreenCaptured"
    assert current_name("owa.env.desktop.msg.MouseEvent") == "desktop/MouseEvent"
    assert current_name("desktop/RawMouseEvent") == "desktop/RawMouseEvent"
    with pytest.raises(UnknownSchema):
        current_name("owa.env.desktop.msg.Joystick")
    with pytest.raises(UnknownSchema):
        resolve_schema("std_msgs/String", "ros2msg", b"")
    # no JSON schema to tell the generation: payloads are sniffed one by one
    plan = resolve_schema("desktop/ScreenCaptured", "jsonschema", b"")
    assert orjson.loads(plan.rewrite(b'{"path":"a.mkv","pts":5}')) == {
        "media_ref": {"uri": "a.mkv", "pts_ns": 5}}
    current = b'{"media_ref":{"uri":"a.mkv","pts_ns":5}}'
    assert plan.rewrite(current) == current
    assert resolve_schema("desktop/MouseEvent", "jsonschema", b'{"properties":{}}').rewrite is None


def _write(path, messages, chunk_size=1024 * 1024):
    with open(path, "wb") as f:
        w = Writer(f, chunk_size=chunk_size)
        w.start(profile="owa", library="test")
        sid = w.register_schema("desktop/KeyboardEvent", "jsonschema",
                                b'{"properties":{"event_type":{},"vk":{}}}')
        ch = w.register_channel("keyboard", "json", sid)
        for i, t in enumerate(messages):
            w.add_message(ch, t, b'{"event_type":"press","vk":%d}' % i, t, i)
        w.finish()


@pytest.mark.parametrize("chunk_size", [1 << 20, 200])
def test_out_of_order_messages_come_out_in_library_log_time_order(tmp_path, chunk_size):
    """One unsorted chunk (stable sort) and many overlapping chunks (library merge)."""
    stamps = [50, 10, 30, 30, 20, 90, 10, 70, 60, 60, 5, 100] * 3
    p = tmp_path / "unordered.mcap"
    _write(p, stamps, chunk_size)
    with open(p, "rb") as f:
        lib = [(m.log_time, m.data) for _, _, m in make_reader(f).iter_messages()]
    ours = [(t, d) for _, t, _, d in read_messages(p)]
    assert ours == lib and [t for t, _ in ours] == sorted(stamps)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("owa-sample")
    generate_owa_recordings(root, files=1, minutes=0.02, with_video=False,
                            generations=("0.1", "0.3", "0.4"))
    return root, json.loads((root / "sample_manifest.json").read_text())


def test_generated_legacy_generations_match_the_current_one(sample):
    root, manifest = sample
    for entry in manifest["files"]:
        if not entry["expected"]["ok"] or entry["generation"] == "0.5":
            continue
        rows = list(read_messages(root / entry["path"]))
        assert len(rows) == entry["messages"]
        screen = [orjson.loads(d) for t, _, _, d in rows if t == "screen"]
        assert [s["media_ref"]["pts_ns"] for s in screen] == [k * 50_000_000
                                                               for k in range(len(screen))]


@pytest.mark.parametrize("fault", ["bad_magic", "truncated", "crc_mismatch", "unknown_schema",
                                   "bad_json"])
def test_every_corruption_is_reported_with_its_rule(sample, fault):
    root, _ = sample
    with pytest.raises(McapCorrupt) as exc:
        for _ in read_messages(root / f"{fault}.mcap"):
            pass
    assert exc.value.rule == FAULTS[fault]


def test_truncation_is_found_before_any_message(sample):
    root, _ = sample
    with pytest.raises(McapCorrupt, match="file ends"):
        with OwaMcapReader(root / "truncated.mcap"):
            pass


def test_data_section_crc_is_checked(tmp_path):
    p = tmp_path / "x.mcap"
    with open(p, "wb") as f:
        w = Writer(f, enable_data_crcs=True)
        w.start(profile="owa", library="test")
        sid = w.register_schema("desktop/KeyboardEvent", "jsonschema", b"{}")
        ch = w.register_channel("keyboard", "json", sid)
        w.add_message(ch, 5, b'{"event_type":"press","vk":65}', 5, 0)
        w.finish()
    data = bytearray(p.read_bytes())
    i = data.index(b"test")  # the header's library string: outside any chunk CRC
    data[i] = ord("T")
    p.write_bytes(bytes(data))
    with pytest.raises(McapCorrupt) as exc:
        list(read_messages(p))
    assert exc.value.rule == "crc_mismatch"


def test_sample_video_frames_sit_at_the_screen_events_pts(tmp_path):
    av = pytest.importorskip("av")
    from robocurate.samples.owa import frame_level

    generate_owa_recordings(tmp_path, files=1, minutes=0.01, with_faults=False)
    pts_ns = [orjson.loads(d)["media_ref"]["pts_ns"]
              for t, _, _, d in read_messages(tmp_path / "rec_000.mcap") if t == "screen"]
    uris = {orjson.loads(d)["media_ref"]["uri"]
            for t, _, _, d in read_messages(tmp_path / "rec_000.mcap") if t == "screen"}
    assert uris == {"rec_000.mkv"}
    with av.open(str(tmp_path / "rec_000.mkv")) as c:
        frames = [(int(f.pts * f.time_base * 10**9), f.to_ndarray(format="rgb24"))
                  for f in c.decode(video=0)]
    assert [p for p, _ in frames] == pts_ns
    for k, (_, img) in enumerate(frames):
        assert abs(int(img[30:, :, 1].mean()) - frame_level(k)) <= 3
