"""OWA message schemas of every generation, mapped to the current ones.

OWAMcap files name one schema per message type (``Schema.name``) and carry the type's
pydantic JSON schema in ``Schema.data``. Four generations are in the wild (reference
``react-tactile-and-owa.md`` 2.1 and the real files under tests/data/owa-mcap):

==========  ==========================================  =================================
generation  names                                       screen payload
==========  ==========================================  =================================
0.1.x       ``owa_env_desktop.msg.*``,                  ``{path, pts, utc_ns}``;
            ``owa_env_gst.msg.ScreenEmitted``           KeyboardState ``{pressed_vk_list}``
0.2-0.3     ``owa.env.desktop.msg.*``,                  ``{path, pts, utc_ns}``
            ``owa.env.gst.msg.ScreenEmitted``
0.4.x       ``desktop/*``                               ``{utc_ns, original_shape, shape,
                                                        path, pts}``
0.5+        ``desktop/*`` (current)                     ``{utc_ns, source_shape, shape,
                                                        media_ref{uri, pts_ns}}``
==========  ==========================================  =================================

Everything here is data: ``NAME_PREFIXES`` renames types, ``FIELD_MAPS`` rewrites
payloads. A channel's normaliser is chosen once from its schema (name + the JSON
schema's property names), so a current-generation channel costs nothing per message;
only legacy payloads are parsed and re-serialised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import orjson

__all__ = [
    "CURRENT_TYPES",
    "FIELD_MAPS",
    "NAME_PREFIXES",
    "ChannelSchema",
    "UnknownSchema",
    "normalise_payload",
    "resolve_schema",
]

# Current message type names (owa-msgs entry points at v0.6); any of these passes as is.
CURRENT_TYPES = frozenset({
    "desktop/KeyboardEvent", "desktop/KeyboardState", "desktop/MouseEvent",
    "desktop/MouseState", "desktop/RawMouseEvent", "desktop/ScreenCaptured",
    "desktop/WindowInfo",
})

# Old type-name prefix -> current prefix; the class name after the prefix is kept except
# for the renames in CLASS_RENAMES.
NAME_PREFIXES = {
    "owa_env_desktop.msg.": "desktop/",
    "owa.env.desktop.msg.": "desktop/",
    "owa_env_gst.msg.": "desktop/",
    "owa.env.gst.msg.": "desktop/",
}
CLASS_RENAMES = {"ScreenEmitted": "ScreenCaptured"}

# A field map lists the target payload's keys in order; each value says where it comes
# from: a source key (str), or a nested object built the same way (dict). A target whose
# source is absent is left out, as the current writer leaves out None fields. Source
# keys not consumed by the map are kept after the mapped ones.
FieldMap = dict[str, Any]

_SCREEN_FROM_PATH_PTS: FieldMap = {
    "utc_ns": "utc_ns",
    "source_shape": "original_shape",
    "shape": "shape",
    "media_ref": {"uri": "path", "pts_ns": "pts"},
}

# Keyed by (current type name, a property that only the legacy payload has).
FIELD_MAPS: dict[tuple[str, str], FieldMap] = {
    ("desktop/ScreenCaptured", "path"): _SCREEN_FROM_PATH_PTS,   # 0.1-0.4
    ("desktop/KeyboardState", "pressed_vk_list"): {"buttons": "pressed_vk_list"},  # 0.1
}


class UnknownSchema(ValueError):
    """A schema name that is no OWA message type of any known generation."""


@dataclass(frozen=True)
class ChannelSchema:
    """How one channel's messages are read: the current type name, and the payload
    rewrite for legacy generations (None: the payload is current and kept byte for byte)."""

    source_name: str
    message_type: str
    rewrite: Callable[[bytes], bytes] | None = None

    @property
    def legacy(self) -> bool:
        return self.source_name != self.message_type or self.rewrite is not None


def current_name(name: str) -> str:
    """The current type name for a schema name of any generation (UnknownSchema if none)."""
    if name in CURRENT_TYPES:
        return name
    for old, new in NAME_PREFIXES.items():
        if name.startswith(old):
            cls = name[len(old):]
            candidate = new + CLASS_RENAMES.get(cls, cls)
            if candidate in CURRENT_TYPES:
                return candidate
    raise UnknownSchema(f"unknown message schema {name!r} (no OWA generation defines it)")


def _schema_properties(schema_data: bytes) -> set[str] | None:
    try:
        doc = orjson.loads(schema_data) if schema_data else None
    except orjson.JSONDecodeError:
        return None
    props = doc.get("properties") if isinstance(doc, dict) else None
    return set(props) if isinstance(props, dict) else None


def _apply(spec: FieldMap, src: dict) -> tuple[dict, set[str]]:
    out, used = {}, set()
    for key, source in spec.items():
        if isinstance(source, dict):
            sub, sub_used = _apply(source, src)
            used |= sub_used
            if sub:
                out[key] = sub
        elif source in src and src[source] is not None:
            out[key] = src[source]
            used.add(source)
    return out, used


def normalise_payload(spec: FieldMap, payload: dict) -> dict:
    """Apply a field map to one decoded payload (pure; used by the rewrite closures)."""
    out, used = _apply(spec, payload)
    for key, value in payload.items():
        if key not in used and key not in out:
            out[key] = value
    return out


def _rewriter(spec: FieldMap) -> Callable[[bytes], bytes]:
    def rewrite(data: bytes) -> bytes:
        payload = orjson.loads(data)
        if not isinstance(payload, dict):
            raise ValueError("payload is not a JSON object")
        return orjson.dumps(normalise_payload(spec, payload))

    return rewrite


def _sniffing_rewriter(spec: FieldMap, marker: str) -> Callable[[bytes], bytes]:
    """For a schema whose JSON schema is missing: rewrite only payloads that carry the
    legacy marker key, pass current ones through (still checked to be JSON objects)."""
    legacy = _rewriter(spec)

    def rewrite(data: bytes) -> bytes:
        payload = orjson.loads(data)
        if not isinstance(payload, dict):
            raise ValueError("payload is not a JSON object")
        return legacy(data) if marker in payload else data

    return rewrite


def resolve_schema(name: str, encoding: str, data: bytes) -> ChannelSchema:
    """The reading plan for one MCAP schema record (UnknownSchema when it is not OWA's)."""
    if encoding not in ("jsonschema", ""):
        raise UnknownSchema(f"schema {name!r} has encoding {encoding!r}, OWA uses jsonschema")
    target = current_name(name)
    props = _schema_properties(data)
    for (type_name, marker), spec in FIELD_MAPS.items():
        if type_name != target:
            continue
        if props is None:
            return ChannelSchema(name, target, _sniffing_rewriter(spec, marker))
        if marker in props:
            return ChannelSchema(name, target, _rewriter(spec))
    return ChannelSchema(name, target, None)
