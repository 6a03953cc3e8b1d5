"""The end-to-end item towers a model can hold, selected by ``model.item_encoder``, built from the data context."""

from __future__ import annotations

from typing import Literal, get_args

from modalrec.data.context import DataContext
from modalrec.errors import ConfigError
from modalrec.nn.image_tower import ImageTower
from modalrec.nn.item_tower import ItemTower
from modalrec.nn.text_tower import TextTower

Tower = Literal["text", "image"]  # the content an end-to-end item encoder reads
TOWERS: tuple[str, ...] = get_args(Tower)


def build_item_tower(
    model: str, encoder: str, ctx: DataContext, dim: int | None, finetune_layers: int, max_length: int
) -> ItemTower:
    """The ``encoder`` tower ("text": MiniLM over the items' texts; "image": EfficientNet-Lite over their images)
    with its top ``finetune_layers`` trained; a clear error naming ``model`` when the dataset lacks that content."""
    if encoder == "text":
        if ctx.item_texts is None:
            raise ConfigError(
                f"{model}: model.item_encoder=text needs item texts, i.e. a dataset whose text feature records its "
                "template (e.g. ml-100k-plot, ml-1m-mm, amazon-scientific-mm); this one has none"
            )
        return TextTower(ctx.item_texts, dim, finetune_layers, max_length)
    if encoder == "image":
        if ctx.item_images is None:
            raise ConfigError(
                f"{model}: model.item_encoder=image needs item images, i.e. a dataset whose image feature records the "
                "EfficientNet-Lite encoder and its image folder or field (e.g. ml-1m-mm); this one has none"
            )
        images = ctx.item_images
        return ImageTower(images.paths, dim, finetune_layers, images.variant, images.size)
    raise ConfigError(f"{model}: model.item_encoder '{encoder}' has no tower; towers: {', '.join(TOWERS)}")
