"""What to extract: one typed section per modality, with command-line keys ``text.*`` / ``image.*``.

A named multimodal dataset (``ml-1m-mm``, ...) has a default :class:`FeatureConfig`; on the command
line ``modalrec features extract dataset=ml-1m-mm image.size=224 fill=mean`` overrides its keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modalrec.data.features.encoders import Encoder, make_encoder
from modalrec.errors import ModalRecError


@dataclass
class TextFeatureConfig:
    encoder: str = "minilm"  # minilm | st:<folder or cached hub name> | open_clip:<arch>@<weights>
    # e.g. "{title}. {categories}."; empty = every text field the dataset has (title, brand, categories, description, text)
    template: str = ""
    batch_size: int = 64  # texts per forward pass
    max_length: int | None = None  # token limit (None = the model's own, 256 for MiniLM)
    allow_download: bool = False  # let sentence-transformers fetch a hub model that is not cached
    name: str = "text"  # the feature's name in the dataset (ctx.features[name])


@dataclass
class ImageFeatureConfig:
    encoder: str = "efficientnet-lite0"  # efficientnet-lite0..4 | timm:<model>[@<weights>] | open_clip:<arch>@<weights>
    folder: str | None = None  # folder of <item>.jpg files (see pattern); or use field
    pattern: str = "{item}.jpg"  # file name of an item's image in folder ({item} = raw item id)
    field: str | None = None  # item metadata column holding image paths (or URLs with download=true)
    download: bool = False  # fetch image URLs from `field` (retries, local cache); needs network access
    size: int = 224  # input side in pixels (EfficientNet-Lite; timm/open_clip use their model's own)
    batch_size: int = 32  # images per forward pass
    name: str = "image"  # the feature's name in the dataset


@dataclass
class DatasetRef:
    name: str = ""  # a registered dataset or a directory saved by modalrec


@dataclass
class FeatureConfig:
    dataset: DatasetRef = field(default_factory=DatasetRef)
    modalities: list[str] = field(default_factory=list)  # which to build: text, image (empty = the dataset's defaults)
    text: TextFeatureConfig = field(default_factory=TextFeatureConfig)
    image: ImageFeatureConfig = field(default_factory=ImageFeatureConfig)
    fill: str = "zero"  # rows of items without the modality: zero | mean (of the items that have it)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    cache: str | None = None  # feature cache folder (default <modalrec cache>/features)
    progress: bool = True  # progress bars


def text_encoder(cfg: FeatureConfig) -> Encoder:
    """The text encoder a config names."""
    options = (
        {"max_length": cfg.text.max_length, "allow_download": cfg.text.allow_download}
        if cfg.text.encoder.split(":")[0] in ("minilm", "st")
        else {}
    )
    return make_encoder(cfg.text.encoder, "text", cfg.device, **options)


def image_encoder(cfg: FeatureConfig) -> Encoder:
    """The image encoder a config names (``size`` applies to EfficientNet-Lite only)."""
    options = {"size": cfg.image.size} if cfg.image.encoder.startswith("efficientnet-lite") else {}
    if cfg.image.size < 32:
        raise ModalRecError(f"image.size must be at least 32 pixels, got {cfg.image.size}")
    return make_encoder(cfg.image.encoder, "image", cfg.device, **options)
