"""Shared pieces of the OWA event encoders: the message record and the encoder interface.

An event of the stage 1 dataset is one ``McapMessage``: ``topic``, ``timestamp`` (ns, the
MCAP log time), ``message`` (the JSON payload bytes, already normalised to the current
schema names) and ``message_type`` (e.g. ``desktop/KeyboardEvent``). The dataset column
``mcap_message`` holds that record serialised exactly like the original's
``McapMessage.model_dump_json()``: compact JSON, keys in the order topic, timestamp,
message, message_type, the payload as a JSON string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


class EncodingError(ValueError):
    """An event that this encoder cannot represent, or text it cannot decode."""


@dataclass(frozen=True)
class McapMessage:
    topic: str
    timestamp: int
    message: bytes
    message_type: str

    @classmethod
    def from_json(cls, data: bytes | str | dict) -> "McapMessage":
        """Parse one ``mcap_message`` cell (bytes or str of JSON) or an already parsed dict."""
        try:
            d = data if isinstance(data, dict) else orjson.loads(data)
            msg = d["message"]
            return cls(topic=str(d["topic"]), timestamp=int(d["timestamp"]),
                       message=msg.encode("utf-8") if isinstance(msg, str) else bytes(msg),
                       message_type=str(d["message_type"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise EncodingError(f"not a serialised McapMessage: {exc}") from exc

    def to_json(self) -> bytes:
        """The byte-for-byte equivalent of pydantic's ``model_dump_json()`` of the original."""
        return orjson.dumps({"topic": self.topic, "timestamp": self.timestamp,
                             "message": self.message.decode("utf-8"),
                             "message_type": self.message_type})

    @property
    def decoded(self) -> dict[str, Any]:
        try:
            value = orjson.loads(self.message)
        except orjson.JSONDecodeError as exc:
            raise EncodingError(f"{self.topic} payload is not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise EncodingError(f"{self.topic} payload is not a JSON object")
        return value


def as_message(event) -> McapMessage:
    """Accept a McapMessage, a serialised one (bytes/str) or a dict with the four fields."""
    if isinstance(event, McapMessage):
        return event
    return McapMessage.from_json(event)


class BaseEventEncoder:
    """``encode(event) -> (text, images)``; ``decode(text, images) -> McapMessage``.

    ``images`` are the screen payloads (ScreenCaptured JSON strings) in the order their
    image placeholders appear in the text.
    """

    name = "base"

    def encode(self, event) -> tuple[str, list[str]]:
        raise NotImplementedError

    def decode(self, text: str, images: list[str] | None = None) -> McapMessage:
        raise NotImplementedError

    def get_vocab(self) -> set[str]:
        raise NotImplementedError

    def encode_tokens(self, event) -> tuple[list[str] | None, str, list[str]]:
        """Like ``encode`` but also the list of vocabulary tokens the text is made of, or
        None when the text holds free text (the caller must run a real tokenizer on it).
        Lets the episode tokenizer map the hierarchical format to ids without a tokenizer call."""
        text, images = self.encode(event)
        return None, text, images
