"""``Dataset.set_transform`` functions for the event and binned datasets (OWA API).

Event dataset rows gain ``encoded_event`` (the encoder's text, for keyboard/mouse events
when ``encode_actions``) and ``image`` (a PIL image for screen events when
``load_images``); binned rows become ``instruction``, ``images`` (the state's screens)
and ``encoded_events`` (the actions' texts). ``set_transform`` hands batches (dicts of
lists); a single row dict is accepted too. An event that cannot be encoded or whose
frame cannot be loaded gives ``None`` / is left out of the lists, with a warning naming
the episode and timestamp (the original printed and went on the same way); with
``placeholder_images=True`` a missing frame is a black image instead.
"""

from __future__ import annotations

from robocurate.log import get_logger
from robocurate.owa.encoders import BaseEventEncoder, EncodingError, McapMessage, create_encoder
from robocurate.owa.media import FrameLoader, MediaError

ACTION_TOPICS = ("keyboard", "mouse")


def _is_batch(examples: dict) -> bool:
    return isinstance(examples.get("episode_path"), list)


def _warn(what: str, episode_path, exc: Exception, **kw) -> None:
    get_logger(pipeline="owa").warning(what, episode=str(episode_path), error=str(exc), **kw)


def _row_or_batch(one, empty_keys: tuple[str, ...]):
    """A ``datasets`` transform applying ``one`` to a row, or row by row to a batch
    (columns of lists); an empty batch keeps the output columns ``empty_keys``."""

    def transform(examples: dict) -> dict:
        if not _is_batch(examples):
            return one(examples)
        done = [one(dict(zip(examples, values))) for values in zip(*examples.values())]
        return {k: [d[k] for d in done] for k in (done[0] if done else empty_keys)}

    return transform


def create_event_dataset_transform(encoder_type: str = "hierarchical", load_images: bool = True,
                                   encode_actions: bool = True, keep_original: bool = False,
                                   encoder: BaseEventEncoder | None = None,
                                   placeholder_images: bool = False,
                                   frame_loader: FrameLoader | None = None):
    event_encoder = encoder or create_encoder(encoder_type)
    loader = frame_loader or FrameLoader(placeholder=placeholder_images)

    def one(example: dict) -> dict:
        result = dict(example) if keep_original else {}
        result["encoded_event"] = None
        result["image"] = None
        topic = example.get("topic")
        try:
            msg = McapMessage.from_json(example["mcap_message"])
            if topic == "screen" and load_images:
                result["image"] = loader.load_pil(msg.message, example.get("episode_path"),
                                                  msg.timestamp)
            elif topic in ACTION_TOPICS and encode_actions:
                result["encoded_event"] = event_encoder.encode(msg)[0]
        except (EncodingError, MediaError) as exc:
            _warn("owa event not transformed", example.get("episode_path"), exc,
                  topic=topic, timestamp_ns=example.get("timestamp_ns"))
        return result

    return _row_or_batch(one, ("encoded_event", "image"))


def create_binned_dataset_transform(encoder_type: str = "hierarchical",
                                    instruction: str = "Complete the computer task",
                                    load_images: bool = True, encode_actions: bool = True,
                                    keep_original: bool = False,
                                    encoder: BaseEventEncoder | None = None,
                                    placeholder_images: bool = False,
                                    frame_loader: FrameLoader | None = None):
    event_encoder = encoder or create_encoder(encoder_type)
    loader = frame_loader or FrameLoader(placeholder=placeholder_images)

    def one(example: dict) -> dict:
        result = dict(example) if keep_original else {}
        result.update(instruction=instruction, images=[], encoded_events=[])
        episode = example.get("episode_path")
        if load_images:
            for raw in example.get("state") or []:
                try:
                    msg = McapMessage.from_json(raw)
                    result["images"].append(loader.load_pil(msg.message, episode, msg.timestamp))
                except (EncodingError, MediaError) as exc:
                    _warn("owa state image not loaded", episode, exc, bin_idx=example.get("bin_idx"))
        if encode_actions:
            for raw in example.get("actions") or []:
                try:
                    result["encoded_events"].append(event_encoder.encode(McapMessage.from_json(raw))[0])
                except EncodingError as exc:
                    _warn("owa action not encoded", episode, exc, bin_idx=example.get("bin_idx"))
        return result

    return _row_or_batch(one, ("instruction", "images", "encoded_events"))
