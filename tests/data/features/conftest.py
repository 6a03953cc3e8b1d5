"""Generated images shared by the feature tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """item0..2 solid red/green/blue JPEGs, item3 a truncated JPEG, item4 not an image, item5 absent."""
    pil = pytest.importorskip("PIL.Image")
    folder = tmp_path / "images"
    folder.mkdir()
    for index, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        pil.new("RGB", (40, 60), colour).save(folder / f"{index}.jpg", quality=95)
    whole = (folder / "0.jpg").read_bytes()
    (folder / "3.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "4.jpg").write_text("this is not a JPEG")
    return folder
