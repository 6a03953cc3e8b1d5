"""What every end-to-end item tower shares: a pretrained encoder split into a frozen, cached lower part and
trained top layers.

The survey's *end-to-end* optimisation (the content encoder trained with the recommender's loss, MoRec,
SIGIR 2023) is affordable on a CPU when most of the encoder stays frozen. An :class:`ItemTower` splits an
encoder of ``L`` layers (transformer layers, convolution blocks) at ``L - finetune_layers``:

- the lower ``L - N`` layers run once, without gradients, over every item's content; their outputs are stored
  in the feature cache, keyed by the content hash of (weights, split point, preprocessing, every input), so a
  second run reads them. With ``N = 0`` nothing after the split trains, so the cache holds the encoder's
  pooled output itself (the frozen features);
- the top ``N`` layers (the checkpoint's own weights), the encoder's pooling and a linear projection to the
  recommender's size run on every forward and are trained, at their own learning rate
  (:meth:`parameter_groups`).

:meth:`pooled` takes item indices, so a model whose loss reads a few items (BPR triples) runs the top layers over
those only. A subclass loads its encoder, calls :meth:`cache_lower` with a function computing the lower outputs,
:meth:`finish` with its top layers, and implements :meth:`top` (top layers + pooling over some items' rows).
Items without content get a zero pooled vector (the projection's bias).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from modalrec.data.features.cache import Encoded, FeatureCache, cache_key
from modalrec.errors import ConfigError


class ItemTower(nn.Module):
    """Item vectors [n_items, dim] from item content, the top ``finetune_layers`` encoder layers trainable."""

    lower: torch.Tensor  # [n_items, ...] outputs of the frozen layers, or the pooled output when nothing trains
    present: torch.Tensor  # bool [n_items]: the item has content

    def __init__(self, n_layers: int, finetune_layers: int, present: Sequence[bool], cache: FeatureCache | None):
        super().__init__()
        if not 0 <= finetune_layers <= n_layers:
            raise ConfigError(
                f"model.finetune_layers must be between 0 and {n_layers} (the encoder's layers), got {finetune_layers}"
            )
        self.n_layers = int(n_layers)
        self.frozen_layers = self.n_layers - int(finetune_layers)
        self.register_buffer("present", torch.tensor(list(present), dtype=torch.bool), persistent=False)
        self.cache = cache if cache is not None else FeatureCache()
        self.layers = nn.ModuleList()
        self.project: nn.Linear | None = None
        self.provenance: dict[str, Any] = {}

    @property
    def pooled_in_cache(self) -> bool:
        """True when nothing trains: the cache holds the pooled output, :meth:`top` is not called."""
        return self.frozen_layers == self.n_layers

    def cache_lower(self, identity: dict[str, Any], digests: Sequence[str | None], compute: Callable[[], torch.Tensor]) -> None:
        """The ``lower`` buffer from the cache (key: ``identity``, the split point and every input's digest), or
        from ``compute()`` (no gradients), which is then saved. ``identity`` names the weights and preprocessing."""
        identity = {**identity, "frozen_layers": self.frozen_layers, "pooled": self.pooled_in_cache}
        self.cache_key = cache_key(identity, list(digests))
        entry = self.cache.load(self.cache_key)
        self.cache_hit = entry is not None
        if entry is None:
            started = time.perf_counter()
            with torch.no_grad():
                states = compute()
            values = states.reshape(len(states), -1).numpy()
            record = {**identity, "shape": list(states.shape[1:])}  # the key stays the identity's
            entry = Encoded(values, self.present.numpy(), record, seconds=time.perf_counter() - started)
            self.cache.save(self.cache_key, entry)
        self.lower_seconds = float(entry.seconds)
        values = np.asarray(entry.values, dtype=np.float32).reshape(len(self.present), *entry.identity["shape"])
        self.register_buffer("lower", torch.from_numpy(values), persistent=False)

    def finish(self, layers: Sequence[nn.Module], width: int, dim: int | None, provenance: dict[str, Any]) -> None:
        """Keep the trained ``layers``, add the projection ``width -> dim`` (None: the host projects) and the
        provenance (encoder, weights and what the subclass adds)."""
        self.layers = nn.ModuleList(layers)
        self.width = int(width)
        self.project = nn.Linear(self.width, dim) if dim is not None else None
        self.provenance = {
            **provenance,
            "layers": self.n_layers,
            "trained_layers": list(range(self.frozen_layers, self.n_layers)),
            "items_with_content": int(self.present.sum()),
            "lower_cache_key": self.cache_key,
        }

    def top(self, lower: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        """[len(lower), width]: the trained layers and the encoder's pooling over these items' lower outputs."""
        raise NotImplementedError

    def pooled(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """[n, width]: the encoder's pooled output for ``items`` (LongTensor; None = every item), zero without
        content."""
        lower = self.lower if items is None else self.lower[items]
        if self.pooled_in_cache:
            return lower
        present = self.present if items is None else self.present[items]
        return self.top(lower, items) * present.unsqueeze(-1).to(lower.dtype)

    def forward(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """V [n, dim]: the projected pooled output of ``items`` (None = every item; the pooled one without a
        projection)."""
        pooled = self.pooled(items)
        return pooled if self.project is None else self.project(pooled)

    def parameter_groups(self, host: nn.Module, lr: float | None) -> list[dict[str, Any]]:
        """The optimiser groups of ``host`` (the model holding this tower): its own parameters and the projection
        under the default learning rate, the encoder's layers under ``lr`` (None: the default)."""
        layers = [p for p in self.layers.parameters() if p.requires_grad]
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
