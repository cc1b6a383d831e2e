"""The hierarchical event encoder, in the July 2025 token format (OWA ``f0e66fde``).

One event is ``<EVENT_START>`` + timestamp + type-specific tokens + ``<EVENT_END>``:

- timestamp: ``<TIMESTAMP>`` and 3 digits: ``(ts mod 4 s) / 4 s`` quantised fractionally
  with bases [4, 10, 10] (10 ms resolution, wraps every 4 s);
- keyboard: ``<KEYBOARD><{vk}><{press|release}>``;
- mouse: ``<MOUSE><move>`` then x/y digits interleaved (``<x1><y1><x2><y2><x3><y3>``),
  ``x/1920`` and ``y/1080`` clamped to [0, 1] and quantised with bases [16, 16, 16];
  a click adds ``<{button|unknown}><{press|release}>``, a scroll ``<{dx}><{dy}>``;
- screen: ``<fake_token_around_image><global-img><image><fake_token_around_image>``, the
  screen payload going to the images list.

The arithmetic is the original's float arithmetic step for step, so the strings are the
same token for token. Decoding scales the normalised coordinates by (screen_size - 1) and
returns the timestamp modulo 4 s (``unwrap_timestamps`` restores an episode's time line).
Quantisation, i.e. what a round trip preserves: timestamps to the 10 ms step below
(mod 4 s); mouse positions clamped to the screen and then within
``screen/4096 + 1`` pixels; keyboard, buttons, press state and scroll deltas exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import orjson

from robocurate.owa.encoders.base import BaseEventEncoder, EncodingError, McapMessage, as_message

_NUM = [f"<{i}>" for i in range(256)]
_TOKEN_RE = re.compile(r"<[^<>]*>")
_INT_RE = re.compile(r"<(-?\d+)>")
BUTTONS = ("left", "right", "middle", "unknown", "x1", "x2")


@dataclass
class HierarchicalEventEncoderConfig:
    timestamp_range_ns: int = 4_000_000_000
    timestamp_bases: list[int] = field(default_factory=lambda: [4, 10, 10])
    mouse_coord_bases: list[int] = field(default_factory=lambda: [16, 16, 16])
    screen_size: tuple[int, int] = (1920, 1080)
    image_token: str = "<image>"
    image_token_prefix: str = "<fake_token_around_image><global-img>"
    image_token_suffix: str = "<fake_token_around_image>"


def quantize_to_digits(value: float, bases: list[int]) -> list[int]:
    """Fractional digits of ``value`` clamped to [0, 1] (the original's algorithm)."""
    digits = []
    remaining = max(0.0, min(1.0, value))
    for base in bases:
        digit = int(remaining * base)
        digits.append(digit)
        remaining = remaining * base - digit
    return digits


def digits_to_value(digits: list[int], bases: list[int]) -> float:
    if len(digits) != len(bases):
        raise EncodingError(f"{len(digits)} digits for {len(bases)} bases")
    value = 0.0
    for digit, base in zip(reversed(digits), reversed(bases)):
        value = (value + digit) / base
    return value


def unwrap_timestamps(timestamps: list[int], range_ns: int = 4_000_000_000,
                      start_ns: int = 0) -> list[int]:
    """Absolute times from decoded (wrapped) ones: each step backwards adds one range.
    Exact as long as consecutive events are less than ``range_ns`` apart."""
    out, offset, prev = [], start_ns - start_ns % range_ns, None
    for ts in timestamps:
        if prev is not None and ts < prev:
            offset += range_ns
        out.append(offset + ts)
        prev = ts
    return out


def _num(i: int) -> str:
    return _NUM[i] if 0 <= i < 256 else f"<{i}>"


class HierarchicalEventEncoder(BaseEventEncoder):
    name = "hierarchical"
    topics = ("keyboard", "mouse", "screen")

    def __init__(self, config: HierarchicalEventEncoderConfig | None = None, **kwargs):
        base = config or HierarchicalEventEncoderConfig()
        self.config = HierarchicalEventEncoderConfig(**(base.__dict__ | kwargs))
        c = self.config
        self._image_tokens = [c.image_token_prefix, c.image_token, c.image_token_suffix]
        self._image_text = "".join(self._image_tokens)

    # -- encoding -------------------------------------------------------------------
    def _timestamp_tokens(self, timestamp_ns: int) -> list[str]:
        r = self.config.timestamp_range_ns
        digits = quantize_to_digits((timestamp_ns % r) / r, self.config.timestamp_bases)
        return ["<TIMESTAMP>"] + [_num(d) for d in digits]

    def _mouse_tokens(self, d: dict) -> list[str]:
        try:
            x, y = d["x"], d["y"]
            kind = d["event_type"]
            dx = [_num(v) for v in quantize_to_digits(x / self.config.screen_size[0],
                                                       self.config.mouse_coord_bases)]
            dy = [_num(v) for v in quantize_to_digits(y / self.config.screen_size[1],
                                                       self.config.mouse_coord_bases)]
        except (KeyError, TypeError) as exc:
            raise EncodingError(f"mouse event without x/y/event_type: {d}") from exc
        tokens = ["<MOUSE>", "<move>"]
        for a, b in zip(dx, dy):
            tokens += (a, b)
        if kind == "click":
            tokens += (f"<{d.get('button') or 'unknown'}>",
                       "<press>" if bool(d.get("pressed")) else "<release>")
        elif kind == "scroll":
            tokens += (f"<{d.get('dx') if d.get('dx') is not None else 0}>",
                       f"<{d.get('dy') if d.get('dy') is not None else 0}>")
        elif kind != "move":
            raise EncodingError(f"unknown mouse event_type {kind!r}")
        return tokens

    def encode_tokens(self, event) -> tuple[list[str], str, list[str]]:
        msg = as_message(event)
        tokens = ["<EVENT_START>"] + self._timestamp_tokens(msg.timestamp)
        images: list[str] = []
        if msg.topic == "keyboard":
            d = msg.decoded
            if "vk" not in d or d.get("event_type") not in ("press", "release"):
                raise EncodingError(f"keyboard event without vk/event_type: {d}")
            tokens += ("<KEYBOARD>", _num(int(d["vk"])), f"<{d['event_type']}>")
        elif msg.topic == "mouse":
            tokens += self._mouse_tokens(msg.decoded)
        elif msg.topic == "screen":
            msg.decoded  # a screen payload that is not a JSON object is an error here
            tokens += self._image_tokens
            images.append(msg.message.decode("utf-8"))
        else:
            raise EncodingError(f"unsupported topic {msg.topic!r} (keyboard, mouse, screen)")
        tokens.append("<EVENT_END>")
        return tokens, "".join(tokens), images

    def encode(self, event) -> tuple[str, list[str]]:
        _, text, images = self.encode_tokens(event)
        return text, images

    # -- decoding -------------------------------------------------------------------
    def _digits(self, tokens: list[str], what: str) -> list[int]:
        out = []
        for t in tokens:
            m = _INT_RE.fullmatch(t)
            if not m:
                raise EncodingError(f"invalid {what} digit token {t!r}")
            out.append(int(m.group(1)))
        return out

    def decode(self, text: str, images: list[str] | None = None,
               screen_size: tuple[int, int] | None = None) -> McapMessage:
        if not (text.startswith("<EVENT_START>") and text.endswith("<EVENT_END>")):
            raise EncodingError("missing <EVENT_START> or <EVENT_END>")
        body = text[len("<EVENT_START>"):-len("<EVENT_END>")]
        n_ts = len(self.config.timestamp_bases) + 1
        tokens = _TOKEN_RE.findall(body)
        if len(tokens) < n_ts + 1 or tokens[0] != "<TIMESTAMP>":
            raise EncodingError(f"no timestamp at the start of {text!r}")
        digits = self._digits(tokens[1:n_ts], "timestamp")
        ts = int(digits_to_value(digits, self.config.timestamp_bases) * self.config.timestamp_range_ns)
        rest = tokens[n_ts:]
        kind = rest[0]
        if kind == "<KEYBOARD>":
            if len(rest) != 3 or rest[2] not in ("<press>", "<release>"):
                raise EncodingError(f"invalid keyboard tokens {rest}")
            vk = self._digits(rest[1:2], "vk")[0]
            payload = {"event_type": rest[2][1:-1], "vk": vk}
            return McapMessage("keyboard", ts, orjson.dumps(payload), "desktop/KeyboardEvent")
        if kind == "<MOUSE>":
            return McapMessage("mouse", ts, orjson.dumps(self._decode_mouse(rest, screen_size)),
                               "desktop/MouseEvent")
        if "".join(rest) == self._image_text:
            if not images:
                raise EncodingError("screen event needs its image payload, none given")
            payload = images[0]
            return McapMessage("screen", ts, payload.encode("utf-8") if isinstance(payload, str)
                               else bytes(payload), "desktop/ScreenCaptured")
        raise EncodingError(f"unknown event type token {kind!r}")

    def _decode_mouse(self, rest: list[str], screen_size) -> dict:
        w, h = screen_size or self.config.screen_size
        n = len(self.config.mouse_coord_bases)
        if len(rest) < 2 + 2 * n or rest[1] != "<move>":
            raise EncodingError(f"invalid mouse tokens {rest}")
        coords = self._digits(rest[2:2 + 2 * n], "mouse coordinate")
        bases = self.config.mouse_coord_bases
        x = int(round(digits_to_value(coords[0::2], bases) * (w - 1)))
        y = int(round(digits_to_value(coords[1::2], bases) * (h - 1)))
        extra = rest[2 + 2 * n:]
        if not extra:
            return {"event_type": "move", "x": x, "y": y}
        if len(extra) != 2:
            raise EncodingError(f"invalid mouse tokens {rest}")
        if extra[0][1:-1] in BUTTONS:
            if extra[1] not in ("<press>", "<release>"):
                raise EncodingError(f"invalid click tokens {extra}")
            return {"event_type": "click", "x": x, "y": y, "button": extra[0][1:-1],
                    "pressed": extra[1] == "<press>"}
        sdx, sdy = self._digits(extra, "scroll")
        return {"event_type": "scroll", "x": x, "y": y, "dx": sdx, "dy": sdy}

    def get_vocab(self) -> set[str]:
        c = self.config
        vocab = ["<EVENT_START>", "<EVENT_END>", "<TIMESTAMP>", "<KEYBOARD>", "<MOUSE>",
                 c.image_token, c.image_token_prefix, c.image_token_suffix]
        vocab += _NUM
        vocab += ["<press>", "<release>", "<move>", "<click>", "<scroll>"]
        vocab += ["<left>", "<right>", "<middle>", "<unknown>"]
        vocab += [f"<{i}>" for i in range(-10, 11)]
        return set(vocab)
