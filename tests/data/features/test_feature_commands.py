"""``modalrec features extract | inspect | import-mmrec`` in-process, with fake encoders and generated images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from feature_fakes import CountingTextEncoder, MeanColourEncoder
from typer.testing import CliRunner

from modalrec.cli import app
from modalrec.data.dataset import Dataset
from modalrec.data.features.encoders import register_encoder
from modalrec.data.storage import load_saved_dataset, save_dataset
from modalrec.errors import ModalRecError

register_encoder("fake-letters", ("text",), lambda a, m, d, o: CountingTextEncoder())
register_encoder("fake-colour", ("image",), lambda a, m, d, o: MeanColourEncoder())
runner = CliRunner()


@pytest.fixture
def saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODALREC_HOME", str(tmp_path / "home"))
    n_items = 6
    users = np.repeat(np.arange(4), n_items)
    items = np.tile(np.arange(n_items), 4)
    ds = Dataset.from_raw("tiny", users, items, item_universe=np.arange(n_items).astype(str))
    ds.item_meta = {
        "title": ["Alien", "Aliens", "Heat", "Ronin", "", "Up"],
        "categories": [["Sci-Fi"], ["Sci-Fi"], ["Crime"], ["Crime"], [], ["Animation"]],
    }
    return save_dataset(ds, tmp_path / "tiny")


def test_extract_builds_both_modalities_then_hits_the_cache(saved: Path, image_folder: Path, tmp_path: Path) -> None:
    args = [
        "features",
        "extract",
        f"dataset={saved}",
        "modalities=text,image",
        "text.encoder=fake-letters",
        "image.encoder=fake-colour",
        f"image.folder={image_folder}",
        "fill=mean",
        "--out",
        str(tmp_path / "out"),
    ]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "built" in first.output and "skipped item 3" in first.output and "skipped item 4" in first.output
    ds = load_saved_dataset(tmp_path / "out")
    assert set(ds.features) == {"text", "image"}
    assert ds.features["text"].mask.tolist() == [True, True, True, True, False, True]
    assert ds.features["image"].mask.tolist() == [True, True, True, False, False, False]
    image = ds.meta["features"]["image"]
    assert (image["skipped_unreadable"], image["missing_input"], image["fill"]) == (2, 1, "mean")
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "hit" in second.output and "built" not in second.output


def test_inspect_prints_agreement_and_writes_a_png(saved: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from modalrec.commands import features as commands

    monkeypatch.setattr(commands, "console", Console(width=250))
    out = tmp_path / "out"
    runner.invoke(
        app,
        ["features", "extract", f"dataset={saved}", "text.encoder=fake-letters", "text.template={title}", "--out", str(out)],
        catch_exceptions=False,
    )
    png = tmp_path / "look.png"
    result = runner.invoke(app, ["features", "inspect", str(out), "--out", str(png), "-k", "2"], catch_exceptions=False)
    assert "kNN shares categories" in result.output and "fake:letters" in result.output
    from PIL import Image

    with Image.open(png) as picture:
        assert picture.size[0] > 400 and picture.size[1] > 400


def test_extract_errors_say_what_to_do(saved: Path) -> None:
    result = runner.invoke(app, ["features", "extract", "text.encoder=minilm"])
    assert isinstance(result.exception, ModalRecError) and "dataset=" in str(result.exception)
    result = runner.invoke(app, ["features", "extract", f"dataset={saved}"])
    assert isinstance(result.exception, ModalRecError) and "--out" in str(result.exception)
    result = runner.invoke(app, ["features", "extract", f"dataset={saved}", "text.encoderr=minilm", "--out", "x"])
    assert isinstance(result.exception, ModalRecError) and "text.encoder" in str(result.exception)


def test_import_mmrec_marks_the_encoder_unknown(tmp_path: Path) -> None:
    folder = tmp_path / "baby"
    folder.mkdir()
    rows = ["userID\titemID\tx_label"] + [f"{u}\t{i}\t{0 if i < 2 else 2}" for u in range(3) for i in range(3)]
    (folder / "baby.inter").write_text("\n".join(rows) + "\n")
    np.save(folder / "text_feat.npy", np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32))
    result = runner.invoke(
        app, ["features", "import-mmrec", str(folder), "--out", str(tmp_path / "saved")], catch_exceptions=False
    )
    assert result.exit_code == 0
    ds = load_saved_dataset(tmp_path / "saved")
    assert ds.features["text"].provenance["encoder"] == "unknown" and ds.features["text"].dim == 8
