"""From a dataset's item content to checked, cached feature matrices with provenance.

``item_texts`` renders each item's text from its metadata with a template; ``item_images`` finds
each item's image file. :func:`encode_items` digests the inputs, returns the cached matrix when
the (encoder, version, inputs) hash is known, and otherwise encodes in batches behind a progress
bar (unreadable images are skipped and listed, never fatal). :func:`to_item_feature` applies the
fill policy to items without the modality and records provenance; :func:`add_feature` does all
of it and attaches the result to the dataset.
"""

from __future__ import annotations

import hashlib
import logging
import re
import string
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modalrec.console import progress as progress_bar
from modalrec.console import progress_log
from modalrec.data.dataset import Dataset, ItemFeature
from modalrec.data.features.cache import Encoded, FeatureCache, cache_key
from modalrec.data.features.encoders import Encoder
from modalrec.errors import ModalRecError

log = logging.getLogger(__name__)

FILLS = ("zero", "mean")
_EMPTY_TEXT = re.compile(r"^[\s\W_]*$")
_DANGLING = re.compile(r"\s*([.,;:|/-])(?:\s*[.,;:|/-])+")  # separators left by empty fields: "A. . B" -> "A. B"


# ------------------------------------------------------------------------------------------ inputs
def _field_text(value: Any) -> str:
    """A metadata value as text: lists joined by ', ', None/NaN as ''."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(_field_text(v) for v in value if _field_text(v))
    return str(value).strip()


def template_fields(template: str) -> list[str]:
    """The ``{field}`` names a template uses."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def item_texts(ds: Dataset, template: str) -> list[str | None]:
    """Each item's text from ``ds.item_meta`` with ``template`` (e.g. ``"{title}. {categories}."``).

    List fields are joined with ', '; separators left dangling by empty fields are collapsed; a text
    with no letters or digits left counts as missing (None). ``{item}`` is the raw item id.
    """
    fields = template_fields(template)
    unknown = [f for f in fields if f != "item" and f not in ds.item_meta]
    if unknown:
        raise ModalRecError(
            f"text template '{template}' uses {unknown}, which dataset '{ds.name}' does not have; "
            f"its item fields are: {', '.join(sorted(ds.item_meta)) or '(none)'}, item"
        )
    if not fields:
        raise ModalRecError(f"text template '{template}' names no field; use e.g. '{{title}}. {{categories}}.'")
    columns = {f: ds.item_meta[f] for f in fields if f != "item"}
    ids = ds.item_ids.tolist()
    texts: list[str | None] = []
    for i in range(ds.n_items):
        values = {f: _field_text(column[i]) for f, column in columns.items()}
        text = template.format(item=ids[i], **values) if "item" in fields else template.format(**values)
        text = _DANGLING.sub(r"\1", text).strip(" .,;:|/-") if any(not v for v in values.values()) else text.strip()
        texts.append(None if _EMPTY_TEXT.match(text) else text)
    return texts


def item_images(
    ds: Dataset, folder: str | Path | None = None, pattern: str = "{item}.jpg", field: str | None = None
) -> list[Path | None]:
    """Each item's image path: ``folder/pattern`` with the raw item id, or the path in ``item_meta[field]``.

    Items whose file does not exist get None (missing). A list value takes its first entry.
    """
    if (folder is None) == (field is None):
        raise ModalRecError(
            "give exactly one of an image folder (image.folder=...) or an item field holding paths (image.field=...)"
        )
    paths: list[Path | None] = []
    if folder is not None:
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise ModalRecError(f"image folder {root} does not exist")
        for raw in ds.item_ids.tolist():
            path = root / pattern.format(item=raw)
            paths.append(path if path.is_file() else None)
        return paths
    if field not in ds.item_meta:
        raise ModalRecError(f"dataset '{ds.name}' has no item field '{field}'; its fields: {', '.join(sorted(ds.item_meta))}")
    for value in ds.item_meta[field]:
        value = value[0] if isinstance(value, (list, tuple)) and value else value
        listed = Path(str(value)).expanduser() if value else None
        paths.append(listed if listed is not None and listed.is_file() else None)
    return paths


def input_digests(inputs: Sequence[str | Path | None]) -> list[str | None]:
    """sha256 of each text, or of each image file's bytes (so renamed folders still hit the cache)."""
    out: list[str | None] = []
    for item in inputs:
        if item is None:
            out.append(None)
        elif isinstance(item, Path):
            out.append("file:" + hashlib.sha256(item.read_bytes()).hexdigest())
        else:
            out.append("text:" + hashlib.sha256(item.encode("utf-8")).hexdigest())
    return out


# ------------------------------------------------------------------------------------------ encoding
@dataclass(frozen=True)
class Batch:
    """Rows of the output matrix and their decoded inputs; ``failed`` lists (row, reason) not decodable."""

    rows: list[int]
    items: list[Any]
    failed: list[tuple[int, str]]


def _batches(inputs: Sequence[Any], rows: list[int], batch_size: int, decode: Callable[[Any], Any] | None) -> Iterator[Batch]:
    """Batches of present inputs, decoded (images) on the way; a decoding error skips only that item."""
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        if decode is None:
            yield Batch(chunk, [inputs[r] for r in chunk], [])
            continue
        kept, items, failed = [], [], []
        for row in chunk:
            try:
                items.append(decode(inputs[row]))
                kept.append(row)
            except (OSError, ValueError, SyntaxError) as exc:  # PIL raises these for broken / truncated files
                failed.append((row, f"{type(exc).__name__}: {exc}"))
        yield Batch(kept, items, failed)


def encode_items(
    encoder: Encoder,
    inputs: Sequence[str | Path | None],
    *,
    batch_size: int = 64,
    cache: FeatureCache | None = None,
    progress: bool = True,
    item_ids: Sequence[str] | None = None,
) -> Encoded:
    """Encode ``inputs`` (texts, or image paths for image encoders) into ``[n, dim]``, through the cache.

    None inputs are not encoded (``encoded[i]`` False). Image files that cannot be decoded are
    skipped and listed in ``skipped``; the run continues. The result is cached under the hash of
    the encoder identity and every input's digest (pass ``cache=None`` to bypass).
    """
    if batch_size < 1:
        raise ModalRecError(f"batch_size must be at least 1, got {batch_size}")
    identity = encoder.identity()
    key = cache_key(identity, input_digests(inputs)) if cache is not None else ""
    if cache is not None:
        hit = cache.load(key)
        if hit is not None and hit.values.shape[0] == len(inputs):
            log.info("%s features: cache hit (%s)", encoder.modality, key[:12])
            return hit
    decode = None
    if encoder.modality == "image":
        from modalrec.data.features.image import read_image

        decode = read_image
    ids = item_ids if item_ids is not None else [str(i) for i in range(len(inputs))]
    rows = [i for i, item in enumerate(inputs) if item is not None]
    started = time.perf_counter()
    dim = encoder.dim  # loads the model before the progress bar starts
    values = np.zeros((len(inputs), dim), dtype=np.float32)
    encoded = np.zeros(len(inputs), dtype=bool)
    skipped: list[dict[str, str]] = []
    with progress_bar(f"{encoder.modality}: {encoder.name}", len(rows), unit="items", enabled=progress) as bar:
        for batch in _batches(inputs, rows, batch_size, decode):
            for row, reason in batch.failed:
                skipped.append({"item": str(ids[row]), "input": str(inputs[row]), "reason": reason})
                log.warning("skipped item %s: cannot read %s (%s)", ids[row], inputs[row], reason)
            if batch.items:
                vectors = encoder.encode(batch.items)
                values[batch.rows] = vectors
                encoded[batch.rows] = True
            bar.advance(len(batch.rows) + len(batch.failed))
    result = Encoded(values, encoded, {**identity, "dim": dim}, skipped, time.perf_counter() - started)
    progress_log.info("%s features: %d items encoded by %s in %.1fs (%d skipped)", encoder.modality, len(rows) - len(skipped),
                      encoder.name, result.seconds, len(skipped))  # fmt: skip
    if not np.isfinite(values).all():
        raise ModalRecError(f"encoder {encoder.name} produced NaN/inf vectors; nothing was cached")
    if cache is not None:
        cache.save(key, result)
    return result


# ------------------------------------------------------------------------------------------ features
def to_item_feature(result: Encoded, fill: str = "zero", **provenance: Any) -> ItemFeature:
    """An :class:`ItemFeature` from an encoded matrix: rows without a vector get ``fill`` (zero or mean).

    The provenance records the encoder identity, dim, fill policy, counts and skipped inputs.
    """
    if fill not in FILLS:
        raise ModalRecError(f"fill must be one of {', '.join(FILLS)}, got '{fill}'")
    mask = np.asarray(result.encoded, dtype=bool)
    values = np.array(result.values, dtype=np.float32)
    if fill == "mean" and mask.any():
        values[~mask] = values[mask].mean(axis=0)
    else:
        values[~mask] = 0.0
    n_skipped = len(result.skipped)
    record = {
        **result.identity,
        "fill": fill,
        "items": int(mask.size),
        "present": int(mask.sum()),
        "missing": int((~mask).sum()),
        "missing_input": int((~mask).sum()) - n_skipped,
        "skipped_unreadable": n_skipped,
        "skipped": result.skipped[:50],  # the first 50 unreadable inputs, with reasons
        "encode_seconds": round(result.seconds, 3),
        **provenance,
    }
    return ItemFeature(values, mask, record)


def add_feature(
    ds: Dataset,
    name: str,
    encoder: Encoder,
    inputs: Sequence[str | Path | None],
    *,
    fill: str = "zero",
    batch_size: int = 64,
    cache: FeatureCache | None = None,
    progress: bool = True,
    **provenance: Any,
) -> tuple[Dataset, Encoded]:
    """Encode ``inputs`` (one per item, in item order) and attach them as feature ``name``."""
    if len(inputs) != ds.n_items:
        raise ModalRecError(f"got {len(inputs)} inputs for feature '{name}' but dataset '{ds.name}' has {ds.n_items} items")
    if fill not in FILLS:
        raise ModalRecError(f"fill must be one of {', '.join(FILLS)}, got '{fill}'")
    result = encode_items(encoder, inputs, batch_size=batch_size, cache=cache, progress=progress, item_ids=ds.item_ids.tolist())
    feature = to_item_feature(result, fill, **provenance)
    return ds.with_feature(name, feature), result
