"""Item content features: encoders behind one interface, a content-hash cache, extraction and inspection.

Nothing here imports a deep-learning text or image library until an encoder is used, so a core
install loads datasets with precomputed features without the ``text`` / ``image`` extras.
"""

from modalrec.data.features.cache import Encoded, FeatureCache
from modalrec.data.features.config import (
    FeatureConfig,
    ImageFeatureConfig,
    TextFeatureConfig,
)
from modalrec.data.features.encoders import (
    Encoder,
    EncoderUnavailableError,
    make_encoder,
    register_encoder,
)
from modalrec.data.features.extract import (
    add_feature,
    encode_items,
    item_images,
    item_texts,
    to_item_feature,
)

__all__ = [
    "Encoded",
    "Encoder",
    "EncoderUnavailableError",
    "FeatureCache",
    "FeatureConfig",
    "ImageFeatureConfig",
    "TextFeatureConfig",
    "add_feature",
    "encode_items",
    "item_images",
    "item_texts",
    "make_encoder",
    "register_encoder",
    "to_item_feature",
]
