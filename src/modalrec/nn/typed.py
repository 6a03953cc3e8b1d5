"""Typing helpers: a ``nn.ModuleList`` that knows its element type (so ``stack[i].weight`` type-checks), a typed sum.

Registration, state-dict keys and iteration order are ``nn.ModuleList``'s: only the static types differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar, cast, overload

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


class TypedModuleList(nn.ModuleList, Generic[M]):
    """``nn.ModuleList`` of ``M`` (e.g. one ``nn.Embedding`` per modality)."""

    def __init__(self, modules: Iterable[M]) -> None:
        super().__init__(modules)

    @overload
    def __getitem__(self, idx: slice) -> TypedModuleList[M]: ...

    @overload
    def __getitem__(self, idx: int) -> M: ...

    def __getitem__(self, idx: int | slice) -> M | TypedModuleList[M]:
        return cast("M | TypedModuleList[M]", super().__getitem__(idx))

    def __iter__(self) -> Iterator[M]:
        return cast(Iterator[M], super().__iter__())


def tensor_sum(terms: Iterable[torch.Tensor]) -> torch.Tensor:
    """``sum(terms)`` typed as a tensor: the same left-to-right additions, without the builtin's ``0 +`` start
    (exact, so results are bit-identical); at least one term is required."""
    it = iter(terms)
    total = next(it)
    for term in it:
        total = total + term
    return total
