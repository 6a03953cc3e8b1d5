"""Typed run configuration: one dataclass per section, YAML on disk, ``key.sub=value`` overrides.

Every key is declared once, here or in a model's ``Config`` dataclass (next to the model's code),
with its default, a comment saying what it means and its range (:class:`modalrec.checks.Check`), choices
(a ``Literal[...]`` type) or rules between keys (``rules``) where it has them, applied by :func:`coerce` whenever a
value is set and by :func:`modalrec.checks.check_fields` once all are. A run's resolved config is written to its
run directory, so ``modalrec train --config runs/<run>/config.yaml`` re-runs it.

Layout::

    model:   {name: sasrec, <the model's own hyper-parameters>}
    dataset: {name: ml-1m, preprocess: {...}, split: {...}}
    train:   {epochs, batch_size, lr, ...}
    eval:    {ks, metrics, ...}
    run:     {name, dir}

On the command line ``model=sasrec`` is short for ``model.name=sasrec`` and ``dataset=ml-1m`` for
``dataset.name=ml-1m``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from modalrec.checks import Check, Positive, check_fields
from modalrec.data.preprocess import PreprocessConfig
from modalrec.data.split import SplitConfig
from modalrec.errors import ConfigError, nearest
from modalrec.models.base import get_model_class


@dataclass
class DatasetConfig:
    name: str = "ml-100k"  # a registered dataset (`modalrec datasets`), a directory saved by modalrec, or a CSV/TSV/Parquet file
    columns: dict[str, str] = field(
        default_factory=dict
    )  # file datasets: {user|item|timestamp|rating: column}; unset roles use common names
    sep: str | None = None  # file datasets: column separator (None = from the suffix, else sniffed)
    feature_files: dict[str, str] = field(default_factory=dict)  # extra item features {name: .npy path}, rows by feature_rows
    feature_rows: str = "token-1"  # row of an item in those files: token-1 (MicroLens) | token | index
    # share of items whose content is corrupted in every split (noisy multimodal inputs)
    feature_noise: Annotated[float, Check(ge=0, le=1)] = 0.0
    # gaussian (noise at the feature's scale) | shuffle (rows permuted among them)
    feature_noise_kind: Literal["gaussian", "shuffle"] = "gaussian"
    feature_noise_seed: int = 0  # which items are corrupted, and the noise
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    split: SplitConfig = field(default_factory=lambda: SplitConfig(method="auto"))


@dataclass
class TrainConfig:
    epochs: Positive = 100  # upper bound; early stopping usually ends sooner
    batch_size: Positive = 2048  # training examples per step (triples, sequences or user rows, by the model's view)
    lr: Annotated[float, Check(gt=0)] = 1e-3  # learning rate
    weight_decay: Annotated[float, Check(ge=0)] = 0.0  # decoupled for adamw, L2 for adam/sgd
    optimizer: Literal["adam", "adamw", "sgd", "adagrad"] = "adam"
    scheduler: Literal["none", "step", "cosine", "exponential"] = "none"
    step_size: Positive = 10  # epochs between decays (scheduler=step)
    gamma: Annotated[float, Check(gt=0, le=1)] = 0.5  # decay factor (scheduler=step | exponential)
    clip_grad_norm: Annotated[float, Check(gt=0)] | None = None  # max gradient norm; None = no clipping
    eval_every: Positive = 1  # validate every n epochs
    patience: Positive = 10  # stop after this many validations without improvement
    select: str = "ndcg@10"  # validation metric that selects the checkpoint (higher is better)
    # negative sampling of the triples view: uniform | popularity
    negatives: Literal["uniform", "popularity"] = "uniform"
    num_negatives: Positive = 1  # negatives per positive (triples view)
    # sequences view: all (every position, causal) | last (prefix augmentation)
    seq_target: Literal["all", "last"] = "all"
    # sequences view: samples per epoch, a seeded random subset drawn afresh each epoch (None = all)
    epoch_samples: Positive | None = None
    seed: int = 2024  # seeds python, numpy and torch, and every sampler
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on GPU)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = False  # bf16 autocast of the training forward pass (CUDA; CPU too, fast where it has AMX / AVX512-BF16)
    threads: Positive | None = None  # torch intra-op threads; None = torch's default
    progress: bool = True  # progress bars (turned off when not a terminal)
    # micro-batches per optimiser step (less memory, same update: batch_size stays the examples per step)
    grad_accum: Positive = 1
    # torchrun runs: auto (nccl on CUDA, gloo on CPU) | nccl | gloo
    dist_backend: Literal["auto", "nccl", "gloo"] = "auto"
    dist_timeout: Positive = 1800  # torchrun runs: seconds a rank waits for the others (rank 0 validates alone meanwhile)
    ddp_find_unused: bool = False  # torchrun runs: the loss leaves some parameters without gradients (DDP must search)


@dataclass
class EvalConfig:
    ks: list[Positive] = field(default_factory=lambda: [10, 20])  # cut-offs of every metric
    metrics: list[str] = field(default_factory=lambda: ["recall", "ndcg", "hit", "mrr", "precision", "map"])
    user_chunk: Positive = 1024  # users scored at once
    item_chunk: Positive = 100_000  # items scored at once (bounds memory with user_chunk)
    # None = full ranking; uniform | popularity = sampled negatives (reported as such)
    sampled: Literal["uniform", "popularity"] | None = None
    n_negatives: Positive = 100  # negatives per user when sampled


@dataclass
class RunSection:
    name: str | None = None  # run directory name; default <model>-<dataset>-<time>
    dir: str = "runs"  # parent directory of run directories


@dataclass
class RunConfig:
    model: dict[str, Any] = field(default_factory=lambda: {"name": "pop"})  # name + the model's hyper-parameters
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunSection = field(default_factory=RunSection)

    @property
    def model_name(self) -> str:
        return str(self.model["name"]).lower()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


SHORTHANDS = {"model": "model.name", "dataset": "dataset.name"}


# ---------------------------------------------------------------------- typed coercion
def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Annotated:
        return _type_name(typing.get_args(tp)[0])
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (from YAML or a command-line string) to the declared type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:  # choices: the value as the literals' type, then one of them
        return Check(choices=args)(coerce(value, type(args[0]), key), key)
    if origin is Annotated:
        value = coerce(value, args[0], key)
        for check in tp.__metadata__:
            if isinstance(check, Check):
                value = check(value, key)
        return value
    if origin in (typing.Union, types.UnionType):
        if (value is None or (isinstance(value, str) and value.lower() in ("none", "null", "~"))) and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        if len(errors) == 1:  # X | None: X's own message (it names the bound a value broke)
            raise ConfigError(errors[0])
        raise ConfigError(f"'{key}' expects {_type_name(tp)}, got {value!r}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            value = [value]
        inner = args[0] if args else Any
        items = [coerce(v, inner, key) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if isinstance(value, str) and value.strip().startswith("{"):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' expects a mapping, e.g. {key}.<name>=<value>, got {value!r}")
        key_type, value_type = args or (Any, Any)
        return {coerce(k, key_type, key): coerce(v, value_type, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"'{key}' expects a boolean (true/false), got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"'{key}' expects an integer, got {value!r}")
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"'{key}' expects an integer, got {value!r}") from None
        if not as_float.is_integer():
            raise ConfigError(f"'{key}' expects an integer, got {value!r}")
        return int(as_float)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"'{key}' expects a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"'{key}' expects a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"'{key}' expects a string, got {value!r}")
        return str(value)
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def apply_values(obj: Any, values: dict[str, Any], prefix: str = "") -> None:
    """Set (nested) dataclass fields from a mapping, refusing unknown keys with a suggestion."""
    hints = _hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            guess = nearest(key, names)
            hint = f" Did you mean '{prefix}{guess}'?" if guess else ""
            raise ConfigError(f"unknown config key '{full}'.{hint} Valid keys here: {', '.join(prefix + n for n in names)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"'{full}' is a section; set its keys, e.g. {full}.{dataclasses.fields(current)[0].name}=...")
            apply_values(current, value, prefix=f"{full}.")
        else:
            setattr(obj, key, coerce(value, hints[key], full))


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["model=sasrec", "train.lr=1e-3"]`` -> nested dict (values are strings, typed later)."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not key=value (e.g. train.lr=0.001 or model=sasrec)")
        key, value = item.split("=", 1)
        key = SHORTHANDS.get(key.strip(), key.strip())
        if not all(part.strip() for part in key.split(".")):
            raise ConfigError(f"override '{item}' has an empty key part before '=' (e.g. train.lr=0.001)")
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}' sets a key inside '{part}', which is a value")
        node[parts[-1]] = value
    return nested


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file; a YAML error names the file and line."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (model, dataset, train, eval, run)")
    for key, short in SHORTHANDS.items():
        if isinstance(data.get(key), str):
            data[key] = {short.split(".")[1]: data[key]}
    return data


def resolve(overrides: list[str] | None = None, config_file: str | Path | None = None) -> RunConfig:
    """Defaults <- the model's train defaults <- config file <- command-line overrides, type-checked.

    The model's hyper-parameters are validated against its ``Config`` dataclass and stored with
    every default filled in, so the saved config is complete.
    """
    user = load_yaml(config_file) if config_file else {}
    user = _merge(user, parse_overrides(overrides or []))
    for section in ("model", "train"):  # read below before apply_values checks the others
        if not isinstance(user.get(section) or {}, dict):
            where = f" in {config_file}" if config_file else ""
            raise ConfigError(
                f"'{section}'{where} is a section; set its keys, e.g. {section}.{'name' if section == 'model' else 'lr'}=..."
            )
    cfg = RunConfig()
    model_values = dict(user.pop("model", {}) or {})
    name = str(model_values.pop("name", cfg.model["name"]))
    model_cls = get_model_class(name)

    # the model's trainer defaults sit under anything the user set
    train_user = user.get("train", {}) or {}
    user["train"] = _merge(dict(model_cls.train_defaults), train_user)
    apply_values(cfg, user)

    check_fields(cfg)  # the rules between fields, once every value is set
    cfg.model = {"name": model_cls.name, **dataclasses.asdict(_model_config(model_cls, model_values))}
    return cfg


def model_config(cfg: RunConfig) -> Any:
    """The model's typed ``Config`` instance built from ``cfg.model``."""
    return _model_config(get_model_class(cfg.model_name), {k: v for k, v in cfg.model.items() if k != "name"})


def _model_config(model_cls: Any, values: dict[str, Any]) -> Any:
    """``model_cls.Config`` with ``values`` (``model.<key>``) set and checked, rules included."""
    model_cfg = model_cls.Config()
    apply_values(model_cfg, values, prefix="model.")
    check_fields(model_cfg, "model.")
    return model_cfg
