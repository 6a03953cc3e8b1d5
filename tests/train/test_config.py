"""Typed config: overrides, type errors, unknown keys with suggestions, model defaults, YAML round trip."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import pytest

from modalrec.checks import Positive, Rule, check_fields, choices, multiple_of
from modalrec.config import coerce, model_config, resolve
from modalrec.errors import ConfigError, UnknownNameError


@dataclass
class Config:
    """A model config with a range, choices and a rule between keys."""

    dim: Positive = 8
    heads: int = 2
    kind: Literal["x", "y"] = "x"
    rules: ClassVar[tuple[Rule, ...]] = (multiple_of("dim", "heads"),)


def test_overrides_are_typed_and_shorthands_work() -> None:
    cfg = resolve(["model=bpr", "dataset=ml-1m", "train.lr=1e-2", "train.epochs=3", "eval.ks=5,10", "model.dim=16"])
    assert cfg.model_name == "bpr" and cfg.dataset.name == "ml-1m"
    assert cfg.train.lr == pytest.approx(0.01) and isinstance(cfg.train.lr, float)
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.eval.ks == [5, 10]
    assert model_config(cfg).dim == 16


def test_wrong_type_names_key_and_expected_type() -> None:
    with pytest.raises(ConfigError, match=r"'train.epochs' expects an integer, got 'many'"):
        resolve(["model=bpr", "train.epochs=many"])
    with pytest.raises(ConfigError, match=r"'train.clip_grad_norm' expects"):
        resolve(["model=bpr", "train.clip_grad_norm=big"])


def test_unknown_keys_suggest_the_nearest_valid_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'train.lrr'.*Did you mean 'train.lr'"):
        resolve(["model=bpr", "train.lrr=0.1"])
    with pytest.raises(ConfigError, match=r"unknown config key 'model.dimm'.*Did you mean 'model.dim'"):
        resolve(["model=bpr", "model.dimm=8"])
    with pytest.raises(ConfigError, match=r"Did you mean 'train'"):
        resolve(["model=bpr", "trian.lr=0.1"])


def test_unknown_model_lists_known_models() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown model 'sasrek'.*Did you mean 'sasrec'.*Known models: .*lightgcn"):
        resolve(["model=sasrek"])


def test_model_train_defaults_sit_under_user_overrides() -> None:
    from modalrec.models.base import get_model_class

    defaults = get_model_class("sasrec").train_defaults
    cfg = resolve(["model=sasrec"])
    for key, value in defaults.items():
        assert getattr(cfg.train, key) == value
    assert resolve(["model=sasrec", "train.batch_size=7"]).train.batch_size == 7


def test_yaml_round_trip(tmp_path) -> None:
    cfg = resolve(["model=lightgcn", "train.lr=0.005", "dataset.split.method=random", "dataset.split.seed=3"])
    path = tmp_path / "config.yaml"
    path.write_text(cfg.to_yaml())
    again = resolve(config_file=path)
    assert again.to_dict() == cfg.to_dict()
    # command-line overrides win over the file
    assert resolve(["train.lr=0.1"], config_file=path).train.lr == pytest.approx(0.1)


def test_bad_yaml_names_file_and_line(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model: bpr\ntrain: {lr: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml, line \d+: invalid YAML"):
        resolve(config_file=path)


def test_literal_fields_rules_and_ranges_are_checked_by_the_config_layer() -> None:
    """Choices are a field's Literal type (nested literals flattened, None allowed where the type says so); a Rule
    names every key it relates; check_fields applies all of them to a config built in Python too."""
    Inner = Literal["a", "b"]
    assert choices(Literal[Inner, "c"] | None) == ("a", "b", "c")
    assert coerce("c", Literal[Inner, "c"], "k") == "c" and coerce("none", Literal["a"] | None, "k") is None
    with pytest.raises(ConfigError, match=r"^'model.k' must be one of a, b, c, got 'bb'. Did you mean 'b'\?$"):
        coerce("bb", Literal[Inner, "c"] | None, "model.k")

    check_fields(Config())
    for bad, message in (
        (Config(heads=3), r"^'model.dim', 'model.heads': dim \(8\) must be a multiple of heads \(3\)$"),
        (Config(kind="z"), r"^'model.kind' must be one of x, y, got 'z'"),  # type: ignore[arg-type]
        (Config(dim=0), r"^'model.dim' must be >= 1, got 0$"),
    ):
        with pytest.raises(ConfigError, match=message):
            check_fields(bad, "model.")


def test_rules_are_checked_at_resolve_before_a_model_exists() -> None:
    with pytest.raises(ConfigError, match=r"'model.dim', 'model.heads': dim \(64\) must be a multiple of heads \(3\)"):
        resolve(["model=sasrec", "model.dim=64", "model.heads=3"])
    with pytest.raises(ConfigError, match=r"'train.optimizer' must be one of adam, adamw, sgd, adagrad, got 'adamm'"):
        resolve(["model=bpr", "train.optimizer=adamm"])
