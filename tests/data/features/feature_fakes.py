"""Fake encoders for the feature tests: deterministic, instant, counting what they encode."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from modalrec.data.features.encoders import Encoder


class CountingTextEncoder(Encoder):
    """Bag of letters (26-d, L2-normalised): similar spellings give similar vectors; counts encoded items."""

    modality = "text"
    name = "fake:letters"

    def __init__(self, version: str = "1") -> None:
        super().__init__("cpu")
        self.version = version
        self.encoded = 0
        self.fail_after: int | None = None

    def load(self) -> int:
        return 26

    def encode_batch(self, items: Sequence[str]) -> np.ndarray:
        if self.fail_after is not None and self.encoded >= self.fail_after:
            raise RuntimeError("encoder crashed mid-run")
        self.encoded += len(items)
        out = np.zeros((len(items), 26), dtype=np.float32)
        for row, text in enumerate(items):
            for ch in text.lower():
                if "a" <= ch <= "z":
                    out[row, ord(ch) - 97] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


class MeanColourEncoder(Encoder):
    """An image's mean RGB (3-d): checks that the decoded pixels reach the encoder."""

    modality = "image"
    name = "fake:mean-colour"
    version = "1"

    def __init__(self) -> None:
        super().__init__("cpu")
        self.encoded = 0

    def load(self) -> int:
        return 3

    def encode_batch(self, items: Sequence[Any]) -> np.ndarray:
        self.encoded += len(items)
        return np.stack([np.asarray(image, dtype=np.float32).reshape(-1, 3).mean(axis=0) / 255 for image in items])
