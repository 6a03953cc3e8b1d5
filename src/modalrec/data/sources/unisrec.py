"""UniSRec's "downstream" sequence files: ``<prefix>.train/.valid/.test.inter``, ``.text``, ``.item2index``, ``.user2index``.

The ``.inter`` files hold (user, history ``item_id_list``, next ``item_id``) rows that are already a
leave-one-out split; ``.text`` gives each item's text by raw id (ASIN); the index files (no header:
``raw id \\t index``) give the raw user and item ids. Each user's full sequence is rebuilt from the
test row (history + target) and checked against the valid and train rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modalrec.data.dataset import TEST, TRAIN, VALID, Dataset
from modalrec.data.sources._common import build_dataset, finish, infer_name, iter_lines, require_file
from modalrec.data.sources.recbole import read_atomic
from modalrec.errors import DataFormatError

PARTS = ("train", "valid", "test")


def _rows(path: Path) -> list[tuple[int, str, list[str], str]]:
    """(line, user, history, target) per row of one ``.inter`` file."""
    table = read_atomic(require_file(path, f"UniSRec file {path.name}"))
    table.require("user_id", "item_id_list", "item_id")
    users, targets = table.tokens("user_id"), table.tokens("item_id")
    histories = table.frame["item_id_list"].tolist()
    lines = [number for number, _ in iter_lines(path)][1:]  # file line of each data row
    return [(line, u, h.split(), t) for line, u, h, t in zip(lines, users.tolist(), histories, targets.tolist())]


def _read_index(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(raw ids, their index tokens) ordered by index from a header-less ``raw \\t index`` file."""
    by_index: dict[int, str] = {}
    for line, text in iter_lines(path):
        fields = text.split("\t")
        if len(fields) != 2 or not fields[1].strip().lstrip("-").isdigit():
            raise DataFormatError(path, f"expected 'raw id<TAB>integer index', got {text!r}", line=line)
        index = int(fields[1])
        if index in by_index:
            raise DataFormatError(path, f"index {index} is given twice ('{by_index[index]}' and '{fields[0]}')", line=line)
        by_index[index] = fields[0]
    return np.array([by_index[i] for i in sorted(by_index)], dtype=object), np.array(sorted(by_index), dtype=object)


def _ends_with(sequence: list[str], tail: list[str]) -> bool:
    return len(tail) <= len(sequence) and sequence[len(sequence) - len(tail) :] == tail


def _is_window(sequence: list[str], window: list[str]) -> bool:
    """True when ``window`` occurs contiguously in ``sequence``."""
    width = len(window)
    return any(sequence[start : start + width] == window for start in range(len(sequence) - width + 1))


def _sequences(prefix: Path) -> dict[str, list[str]]:
    """Each user's full item sequence, checked across the three files.

    Histories may be truncated to a maximum length, so consistency is checked on overlaps: the
    valid row (history + target) and the test history end at the same item, and every train row
    (history + target) is a contiguous run of the sequence before its last two items.
    """
    rows = {part: _rows(Path(f"{prefix}.{part}.inter")) for part in PARTS}
    test_path, valid_path, train_path = (Path(f"{prefix}.{p}.inter") for p in ("test", "valid", "train"))
    sequences: dict[str, list[str]] = {}
    for line, user, history, target in rows["test"]:
        if user in sequences:
            raise DataFormatError(test_path, f"user '{user}' has two test rows", line=line)
        sequences[user] = [*history, target]
    seen_valid: set[str] = set()
    for line, user, history, target in rows["valid"]:
        if user not in sequences:
            raise DataFormatError(valid_path, f"user '{user}' has a valid row but no test row", line=line)
        if user in seen_valid:
            raise DataFormatError(valid_path, f"user '{user}' has two valid rows", line=line)
        seen_valid.add(user)
        full, valid_seq = sequences[user], [*history, target]
        test_history = full[:-1]
        if not (_ends_with(test_history, valid_seq) or _ends_with(valid_seq, test_history)):
            raise DataFormatError(
                valid_path,
                f"user '{user}': valid history + target {valid_seq[-5:]} (last 5) does not match the test history "
                f"{test_history[-5:]} (last 5); the files are not one leave-one-out split",
                line=line,
            )
        if len(valid_seq) > len(test_history):  # test history truncated: the valid row reaches further back
            sequences[user] = [*valid_seq, full[-1]]
    for line, user, history, target in rows["train"]:
        if user not in sequences:
            raise DataFormatError(train_path, f"user '{user}' has train rows but no test row", line=line)
        if not _is_window(sequences[user][:-2], [*history, target]):
            raise DataFormatError(
                train_path,
                f"user '{user}': train history + target is not part of the user's sequence before valid/test",
                line=line,
            )
    return sequences


def _read_text(path: Path) -> dict[str, str]:
    """Item text by raw id from ``<prefix>.text`` (``item_id:token``, ``text:token_seq``)."""
    table = read_atomic(path)
    table.require("item_id", "text")
    return dict(zip(table.tokens("item_id").tolist(), table.frame["text"].tolist()))


def _translate(tokens: list[str], index_tokens: np.ndarray, raw_ids: np.ndarray, path: Path, kind: str) -> list[str]:
    """Map the index tokens used in the .inter files to raw ids; unknown indices are refused."""
    lookup = dict(zip((str(t) for t in index_tokens.tolist()), raw_ids.tolist()))
    try:
        return [lookup[t] for t in tokens]
    except KeyError as err:
        raise DataFormatError(path, f"{kind} index {err.args[0]} used in the .inter files is not listed here") from err


def read_unisrec(directory: str | Path, prefix: str | None = None) -> Dataset:
    """Read a UniSRec downstream dataset (e.g. ``Scientific``) as sequences with a leave-one-out split.

    The last item of each user is TEST, the second-to-last VALID, the rest TRAIN; ``timestamp`` is
    the position in the user's sequence. Raw ids are the ASIN / reviewerID from the index files
    when present; ``item_meta['text']`` holds each item's text (None when it has none).
    """
    directory = Path(directory)
    prefix = prefix or infer_name(directory, ".test.inter", "UniSRec")
    base = directory / prefix
    sequences = _sequences(base)
    users: list[str] = []
    items: list[str] = []
    positions: list[int] = []
    split: list[int] = []
    for user, sequence in sequences.items():
        n = len(sequence)
        users.extend([user] * n)
        items.extend(sequence)
        positions.extend(range(n))
        split.extend([TRAIN] * (n - 2) + [VALID] * (n >= 2) + [TEST])
    item_index_path, user_index_path = Path(f"{base}.item2index"), Path(f"{base}.user2index")
    item_ids = user_ids = None
    if item_index_path.is_file():
        item_ids, item_tokens = _read_index(item_index_path)
        items = _translate(items, item_tokens, item_ids, item_index_path, "item")
    if user_index_path.is_file():
        user_ids, user_tokens = _read_index(user_index_path)
        users = _translate(users, user_tokens, user_ids, user_index_path, "user")
    ds = build_dataset(
        prefix,
        base,
        np.array(users, dtype=object),
        np.array(items, dtype=object),
        timestamp=np.array(positions, dtype=np.float64),
        split=np.array(split, dtype=np.int8),
        item_universe=item_ids,
        user_universe=user_ids,
    )
    text_path = Path(f"{base}.text")
    if text_path.is_file():
        texts = _read_text(text_path)
        ds = ds.replace(item_meta={"text": [texts.get(i) for i in ds.item_ids.tolist()]})
    ds.meta["split"] = {"method": "given", "source": "unisrec train/valid/test files", "scheme": "leave-one-out"}
    ds.meta["sequence_order"] = "timestamp is the position in the user's sequence"
    return finish(ds, "unisrec", base, prefix=prefix)
