"""Loading a checkpoint's parameters into a model: a mismatch names the parameters (never torch's RuntimeError
text as a traceback), and runs saved before the item tower was shared (``text_tower.*``) still load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from modalrec.errors import CheckpointError
from modalrec.models.base import ItemTowerHost
from modalrec.train.checkpoint import restore_model


class Host(ItemTowerHost, nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.item_tower = nn.Linear(3, 2)
        self.head = nn.Linear(2, 1)


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda s: s.pop("head.bias"), r"missing head\.bias"),
        (lambda s: s.update({"extra.weight": torch.zeros(1)}), r"not in this version extra\.weight"),
        (lambda s: s.update({"head.weight": torch.zeros(3, 3)}), r"other shape head\.weight"),
    ],
)
def test_a_mismatch_names_the_parameters(edit, named: str, tmp_path: Path) -> None:
    state = Host().state_dict()
    edit(state)
    with pytest.raises(CheckpointError, match=named) as err:
        restore_model(Host(), {"model_state": state}, tmp_path / "best.pt")
    assert "best.pt" in str(err.value) and "Host" in str(err.value)


def test_renamed_keys_are_judged_after_the_models_own_renaming(tmp_path: Path) -> None:
    """A session-3 tower run that also lacks another parameter names only that one, not its renamed tower keys."""
    state = {k.replace("item_tower.", "text_tower."): v for k, v in Host().state_dict().items() if k != "head.bias"}
    with pytest.raises(CheckpointError, match=r"\(missing head\.bias\)") as err:
        restore_model(Host(), {"model_state": state}, tmp_path / "best.pt")
    assert "tower" not in str(err.value)


def test_a_text_tower_saved_under_its_older_name_loads_into_the_item_tower(tmp_path: Path) -> None:
    saved = Host()
    old = {k.replace("item_tower.", "text_tower."): v for k, v in saved.state_dict().items()}
    assert any(k.startswith("text_tower.") for k in old)
    loaded = Host()
    restore_model(loaded, {"model_state": old}, tmp_path / "best.pt")
    for key, value in saved.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
