"""OWA event encoders: the July 2025 hierarchical token strings, JSON encoder, round trips."""

from __future__ import annotations

import orjson
import pytest

from robocurate.owa.encoders import (EncodingError, HierarchicalEventEncoder, JSONEventEncoder,
                                     McapMessage, create_encoder, unwrap_timestamps)
from tests.conftest import SHARED_DATA

OWA = SHARED_DATA / "owa-mcap"
IMG = "<fake_token_around_image><global-img><image><fake_token_around_image>"
CURRENT_NAMES = ("example.mcap", "test-0.5.1.mcap", "test-0.4.2.mcap")


def msg(topic, ts, payload, kind=None):
    kind = kind or {"keyboard": "desktop/KeyboardEvent", "mouse": "desktop/MouseEvent",
                    "screen": "desktop/ScreenCaptured"}[topic]
    return McapMessage(topic, ts, orjson.dumps(payload), kind)


# -- token strings, token for token ------------------------------------------------------
@pytest.mark.parametrize("event,expected", [
    (msg("keyboard", 3_000_000_000, {"event_type": "press", "vk": 84}),
     "<EVENT_START><TIMESTAMP><3><0><0><KEYBOARD><84><press><EVENT_END>"),
    (msg("keyboard", 7_250_000_000, {"event_type": "release", "vk": 13}),  # 7.25 s wraps to 3.25
     "<EVENT_START><TIMESTAMP><3><2><5><KEYBOARD><13><release><EVENT_END>"),
    (msg("mouse", 0, {"event_type": "move", "x": 960, "y": 540}),
     "<EVENT_START><TIMESTAMP><0><0><0><MOUSE><move><8><8><0><0><0><0><EVENT_END>"),
    (msg("mouse", 1751017792293127800,
         {"event_type": "click", "x": 985, "y": 880, "button": "left", "pressed": True}),
     "<EVENT_START><TIMESTAMP><0><2><9><MOUSE><move><8><13><3><0><5><9><left><press><EVENT_END>"),
    (msg("mouse", 10_000_000, {"event_type": "click", "x": 0, "y": 0, "button": None, "pressed": False}),
     "<EVENT_START><TIMESTAMP><0><0><1><MOUSE><move><0><0><0><0><0><0><unknown><release><EVENT_END>"),
    (msg("mouse", 0, {"event_type": "scroll", "x": 480, "y": 270, "dx": 0, "dy": -2}),
     "<EVENT_START><TIMESTAMP><0><0><0><MOUSE><move><4><4><0><0><0><0><0><-2><EVENT_END>"),
    # clamped to the normalised screen: 1.0 is the digit 16, negatives are 0
    (msg("mouse", 0, {"event_type": "move", "x": 2500, "y": -7}),
     "<EVENT_START><TIMESTAMP><0><0><0><MOUSE><move><16><0><0><0><0><0><EVENT_END>"),
    (msg("screen", 1_990_000_000, {"utc_ns": 1, "shape": [8, 8],
                                   "media_ref": {"uri": "a.mkv", "pts_ns": 5}}),
     f"<EVENT_START><TIMESTAMP><1><9><9>{IMG}<EVENT_END>"),
])
def test_hierarchical_strings_match_july_2025_format(event, expected):
    text, images = HierarchicalEventEncoder().encode(event)
    assert text == expected
    assert len(images) == (event.topic == "screen")


def test_hierarchical_screen_size_is_configurable():
    enc = HierarchicalEventEncoder(screen_size=(1000, 500))
    text, _ = enc.encode(msg("mouse", 0, {"event_type": "move", "x": 500, "y": 125}))
    assert "<MOUSE><move><8><4><0><0><0><0>" in text
    assert orjson.loads(enc.decode(text).message) == {"event_type": "move", "x": 500, "y": 125}


def test_vocabulary_is_the_original_one():
    vocab = HierarchicalEventEncoder().get_vocab()
    for tok in ("<EVENT_START>", "<EVENT_END>", "<TIMESTAMP>", "<KEYBOARD>", "<MOUSE>", "<image>",
                "<fake_token_around_image><global-img>", "<fake_token_around_image>", "<0>",
                "<255>", "<-10>", "<press>", "<release>", "<move>", "<click>", "<scroll>",
                "<left>", "<right>", "<middle>", "<unknown>"):
        assert tok in vocab
    assert "<256>" not in vocab and "<-11>" not in vocab
    assert len(vocab) == 8 + 256 + 5 + 4 + 10  # <-10>..<-1> are the only new numbers
    assert JSONEventEncoder().get_vocab() == {"<image>", "<fake_token_around_image><global-img>",
                                               "<fake_token_around_image>"}


def test_hierarchical_decode_inverts_within_quantisation():
    enc = HierarchicalEventEncoder()
    for x in range(0, 1921, 7):
        y = (x * 13) % 1081
        text, _ = enc.encode(msg("mouse", 123_456_789, {"event_type": "move", "x": x, "y": y}))
        d = orjson.loads(enc.decode(text).message)
        assert abs(d["x"] - x) <= 1 and abs(d["y"] - y) <= 1
    for ts in range(0, 8_000_000_000, 3_337_777):
        text, _ = enc.encode(msg("keyboard", ts, {"event_type": "press", "vk": 1}))
        assert 0 <= ts % 4_000_000_000 - enc.decode(text).timestamp <= 10_000_000


def test_decode_rejects_malformed_text():
    enc = HierarchicalEventEncoder()
    for bad in ("<TIMESTAMP><0><0><0><KEYBOARD><1><press>", "<EVENT_START><EVENT_END>",
                "<EVENT_START><TIMESTAMP><0><0><0><WINDOW><EVENT_END>",
                "<EVENT_START><TIMESTAMP><0><x><0><KEYBOARD><1><press><EVENT_END>",
                "<EVENT_START><TIMESTAMP><0><0><0><MOUSE><move><1><2><EVENT_END>",
                f"<EVENT_START><TIMESTAMP><0><0><0>{IMG}<EVENT_END>"):  # screen without image
        with pytest.raises(EncodingError):
            enc.decode(bad)
    with pytest.raises(EncodingError):
        JSONEventEncoder().decode("<EVENT_START>{not json<EVENT_END>")


def test_encode_rejects_unsupported_and_malformed_events():
    enc = HierarchicalEventEncoder()
    with pytest.raises(EncodingError, match="unsupported topic"):
        enc.encode(McapMessage("window", 0, b"{}", "desktop/WindowInfo"))
    with pytest.raises(EncodingError):
        enc.encode(McapMessage("mouse", 0, b"{not json", "desktop/MouseEvent"))
    with pytest.raises(EncodingError):
        enc.encode(McapMessage("keyboard", 0, b'{"vk":1}', "desktop/KeyboardEvent"))
    with pytest.raises(EncodingError):
        enc.encode(b'{"topic":"mouse"}')
    with pytest.raises(ValueError, match="unknown encoder_type"):
        create_encoder("factorized-typo")


def test_mcap_message_serialisation_is_the_originals():
    m = McapMessage("keyboard", 5, b'{"event_type":"press","vk":84}', "desktop/KeyboardEvent")
    assert m.to_json() == (b'{"topic":"keyboard","timestamp":5,"message":"{\\"event_type\\":'
                           b'\\"press\\",\\"vk\\":84}","message_type":"desktop/KeyboardEvent"}')
    assert McapMessage.from_json(m.to_json()) == m
    assert McapMessage.from_json(m.to_json().decode()) == m


def test_json_encoder_format_and_lossless_round_trip():
    enc = JSONEventEncoder()
    k = msg("keyboard", 42, {"event_type": "press", "vk": 84})
    text, images = enc.encode(k)
    assert text == "<EVENT_START>" + k.to_json().decode() + "<EVENT_END>" and images == []
    s = msg("screen", 7, {"utc_ns": 1, "shape": [8, 8], "media_ref": {"uri": "a.mkv", "pts_ns": 5}})
    text, images = enc.encode(s)
    assert f'"message":"{IMG}"' in text and images == [s.message.decode()]
    assert enc.decode(text, images) == s


def test_unwrap_timestamps():
    assert unwrap_timestamps([3_900_000_000, 100_000_000, 3_000_000_000, 500],
                             start_ns=8_000_000_000 + 3_900_000_000) == [
        11_900_000_000, 12_100_000_000, 15_000_000_000, 16_000_000_500]


try:  # stage 1's normaliser (old generations -> current names and fields)
    from robocurate.owa.schemas import resolve_schema
except ImportError:  # pragma: no cover - without it only current-name files are fully checked
    resolve_schema = None


def _events(path):
    from mcap.reader import make_reader

    plans = {}
    with open(path, "rb") as f:
        for schema, channel, m in make_reader(f).iter_messages(log_time_order=True):
            if channel.topic not in ("keyboard", "mouse", "screen"):
                continue
            if resolve_schema is None:
                yield McapMessage(channel.topic, m.log_time, m.data, schema.name)
                continue
            plan = plans.get(schema.id)
            if plan is None:
                plan = plans[schema.id] = resolve_schema(schema.name, schema.encoding, schema.data)
            data = plan.rewrite(m.data) if plan.rewrite else m.data
            yield McapMessage(channel.topic, m.log_time, data, plan.message_type)


@pytest.mark.parametrize("name", sorted(p.name for p in OWA.glob("*.mcap")) if OWA.is_dir() else [])
def test_real_recordings_round_trip(name):
    """decode(encode(e)) for every keyboard/mouse/screen event of the real files.

    Old generations are normalised with stage 1's ``resolve_schema`` first (as the event
    dataset holds them). Without it, keyboard and mouse payloads (same fields in every
    generation) are still checked everywhere, message_type and screens only in files
    that already use the current names."""
    path = OWA / name
    hier, js = HierarchicalEventEncoder(), JSONEventEncoder()
    current = name in CURRENT_NAMES or resolve_schema is not None
    events = list(_events(path))
    assert events
    decoded_ts = []
    for e in events:
        if e.topic == "screen" and b"media_ref" not in e.message:
            continue
        text, images = hier.encode(e)
        d = hier.decode(text, images)
        decoded_ts.append((e.timestamp, d.timestamp))
        assert d.topic == e.topic
        assert 0 <= e.timestamp % 4_000_000_000 - d.timestamp <= 10_000_000
        if current:
            assert d.message_type == e.message_type
        orig, back = orjson.loads(e.message), orjson.loads(d.message)
        if e.topic == "mouse":
            for axis, size in (("x", 1920), ("y", 1080)):
                assert abs(back[axis] - min(max(orig[axis], 0), size)) <= 1, (orig, back)
            rest = {k: v for k, v in orig.items() if k not in ("x", "y")}
            assert {k: back[k] for k in rest} == rest
        else:
            assert back == orig
        jtext, jimages = js.encode(e)
        assert js.decode(jtext, jimages) == e
    # the wrapped 4 s clock unwraps to the episode's time line (gaps here are < 4 s)
    first = decoded_ts[0][0]
    unwrapped = unwrap_timestamps([d for _, d in decoded_ts], start_ns=first)
    for (orig, _), u in zip(decoded_ts, unwrapped):
        assert 0 <= orig - u <= 10_000_000
