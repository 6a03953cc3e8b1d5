"""Item images are served only from inside the image folder: a request never names a path (``../``
finds no item), and a file in the folder that links outside it is not served."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _serve_helpers import Server

from modalrec.serve.engine import ImageFolder


def test_a_symlink_out_of_the_image_folder_is_not_served(tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not for the web")
    folder = tmp_path / "posters"
    folder.mkdir()
    (folder / "1.png").write_bytes(b"\x89PNG")
    os.symlink(secret, folder / "2.png")  # points outside the folder
    (folder / "sub").mkdir()
    os.symlink(folder / "1.png", folder / "3.png")  # points inside: fine
    images = ImageFolder(folder)
    found = {raw: images.path(raw) for raw in ("1", "2", "3")}
    assert found == {"1": (folder / "1.png").resolve(), "2": None, "3": (folder / "1.png").resolve()}


@pytest.mark.parametrize(
    "path",
    [
        "/images/../../etc/passwd",
        "/images/..%2F..%2Fetc%2Fpasswd",
        "/images/%2e%2e/%2e%2e/etc/passwd",
        "/images/0/../../../etc/passwd",
        "/images/%2Fetc%2Fpasswd",
        "/images/..\\..\\etc\\passwd",
    ],
)
def test_path_traversal_in_an_image_request_finds_nothing(ease_server: Server, path: str) -> None:
    response = ease_server.client.get(path)
    assert response.status_code == 404, (path, response.status_code)
    assert b"root:" not in response.content
