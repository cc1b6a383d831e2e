"""OWA event encoders: event (McapMessage) <-> training text.

``create_encoder("hierarchical" | "json", **config)``; each encoder has ``encode``,
``decode`` and ``get_vocab``.
"""

from __future__ import annotations

from robocurate.owa.encoders.base import BaseEventEncoder, EncodingError, McapMessage, as_message
from robocurate.owa.encoders.hierarchical import (HierarchicalEventEncoder,
                                                  HierarchicalEventEncoderConfig,
                                                  unwrap_timestamps)
from robocurate.owa.encoders.json_encoder import JSONEventEncoder, JSONEventEncoderConfig

ENCODERS = {"hierarchical": HierarchicalEventEncoder, "json": JSONEventEncoder}


def create_encoder(encoder_type: str = "hierarchical", **kwargs) -> BaseEventEncoder:
    try:
        cls = ENCODERS[encoder_type]
    except KeyError:
        raise ValueError(f"unknown encoder_type {encoder_type!r}; choose from {sorted(ENCODERS)}") from None
    return cls(**kwargs)


__all__ = ["BaseEventEncoder", "EncodingError", "McapMessage", "as_message", "create_encoder",
           "HierarchicalEventEncoder", "HierarchicalEventEncoderConfig", "JSONEventEncoder",
           "JSONEventEncoderConfig", "unwrap_timestamps", "ENCODERS"]
