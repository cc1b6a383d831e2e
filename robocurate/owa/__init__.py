"""Open World Agents desktop recordings (OWAMcap) -> training datasets.

Names follow the seed's ``owa.data`` package where it has one. Stage 1 and 2 (this
section) read recordings of every OWA schema generation and write ``datasets``
DatasetDicts; the encoders, tokenizer, FSL packing, image loading and transforms are in
the second section.
"""

# ---- MCAP reading, stage 1 (events) and stage 2 (bins) -------------------------------
from robocurate.owa.bins import aggregate_events_to_bins, bin_features, build_binned_dataset
from robocurate.owa.events import (DEFAULT_RATES, DEFAULT_TOPICS, EventSettings,
                                   build_event_dataset, event_features, extract_episode,
                                   mcap_message_json, parse_rates, rate_limit, split_files)
from robocurate.owa.mcapread import McapCorrupt, OwaMcapReader, read_messages
from robocurate.owa.schemas import CURRENT_TYPES, UnknownSchema, resolve_schema

__all__ = [
    "CURRENT_TYPES",
    "DEFAULT_RATES",
    "DEFAULT_TOPICS",
    "EventSettings",
    "McapCorrupt",
    "OwaMcapReader",
    "UnknownSchema",
    "aggregate_events_to_bins",
    "bin_features",
    "build_binned_dataset",
    "build_event_dataset",
    "event_features",
    "extract_episode",
    "mcap_message_json",
    "parse_rates",
    "rate_limit",
    "read_messages",
    "resolve_schema",
    "split_files",
]

# ---- Encoders, EpisodeTokenizer, FSLDataset, images, transforms ----------------------
# (these import datasets/torch/transformers only when used)
from robocurate.owa.encoders import (HierarchicalEventEncoder, JSONEventEncoder, McapMessage,
                                     create_encoder)
from robocurate.owa.fsl import FSLDataset, create_packed_transform
from robocurate.owa.media import FrameLoader, MediaError
from robocurate.owa.tokenizer import EpisodeTokenizer, EpisodeTokenizerConfig
from robocurate.owa.transforms import (create_binned_dataset_transform,
                                       create_event_dataset_transform)

__all__ += [
    "EpisodeTokenizer",
    "EpisodeTokenizerConfig",
    "FSLDataset",
    "FrameLoader",
    "HierarchicalEventEncoder",
    "JSONEventEncoder",
    "McapMessage",
    "MediaError",
    "create_binned_dataset_transform",
    "create_encoder",
    "create_event_dataset_transform",
    "create_packed_transform",
]
