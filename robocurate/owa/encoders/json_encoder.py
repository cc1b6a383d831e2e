"""The JSON event encoder (July 2025 format, with HEAD's ``json.loads`` decoder).

``<EVENT_START>`` + the McapMessage as compact JSON (keys topic, timestamp, message,
message_type; the payload as a JSON string) + ``<EVENT_END>``. A screen event's payload
is replaced by the image placeholder ``prefix + <image> + suffix`` and goes to the images
list. Lossless: decode(encode(e)) == e for every event.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from robocurate.owa.encoders.base import BaseEventEncoder, EncodingError, McapMessage, as_message


@dataclass
class JSONEventEncoderConfig:
    image_token: str = "<image>"
    image_token_prefix: str = "<fake_token_around_image><global-img>"
    image_token_suffix: str = "<fake_token_around_image>"


class JSONEventEncoder(BaseEventEncoder):
    name = "json"
    topics = None  # any topic

    def __init__(self, config: JSONEventEncoderConfig | None = None, **kwargs):
        base = config or JSONEventEncoderConfig()
        self.config = JSONEventEncoderConfig(**(base.__dict__ | kwargs))
        c = self.config
        self._image_text = c.image_token_prefix + c.image_token + c.image_token_suffix

    def encode(self, event) -> tuple[str, list[str]]:
        msg = as_message(event)
        images: list[str] = []
        payload = msg.message.decode("utf-8")
        if msg.topic == "screen":
            msg.decoded  # must be a JSON object
            images.append(payload)
            payload = self._image_text
        body = orjson.dumps({"topic": msg.topic, "timestamp": msg.timestamp,
                             "message": payload, "message_type": msg.message_type})
        return f"<EVENT_START>{body.decode('utf-8')}<EVENT_END>", images

    def decode(self, text: str, images: list[str] | None = None) -> McapMessage:
        if not (text.startswith("<EVENT_START>") and text.endswith("<EVENT_END>")):
            raise EncodingError("missing <EVENT_START> or <EVENT_END>")
        try:
            d = orjson.loads(text[len("<EVENT_START>"):-len("<EVENT_END>")])
        except orjson.JSONDecodeError as exc:
            raise EncodingError(f"event body is not JSON: {exc}") from exc
        if d.get("topic") == "screen" and d.get("message") == self._image_text:
            if not images:
                raise EncodingError("screen event needs its image payload, none given")
            d["message"] = images[0]
        return McapMessage.from_json(d)

    def get_vocab(self) -> set[str]:
        c = self.config
        return {c.image_token, c.image_token_prefix, c.image_token_suffix}
