"""Property tests (hypothesis) of the readers and the config parser on malformed input.

Every generated input either reads into a dataset that validates or fails with the library's own
error (:class:`ModalRecError`) whose message names the file (and the line where the reader has one);
never another exception. ``data import`` of a malformed table leaves nothing on disk.

The inputs start from a valid file and are damaged the ways real files are: a cell replaced by text,
an empty or non-numeric cell, a field too many or too few, a header renamed or retyped, bytes that are
not UTF-8, a NUL, a truncated tail, a broken gzip stream, feature matrices of the wrong shape. Runtime
stays modest (``max_examples`` 60 per property, no deadline).
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modalrec import cli
from modalrec.config import load_yaml, resolve
from modalrec.data.dataset import Dataset
from modalrec.data.sources.mmrec import read_mmrec
from modalrec.data.sources.recbole import read_recbole
from modalrec.data.sources.tabular import read_table
from modalrec.data.sources.unisrec import read_unisrec
from modalrec.errors import ModalRecError

# CI replays the same 60 examples per property (derandomized: a fuzzer never makes CI flaky); set
# MODALREC_FUZZ_EXAMPLES=2000 to search fresh random inputs locally.
_EXPLORE = os.environ.get("MODALREC_FUZZ_EXAMPLES")
FUZZ = settings(
    max_examples=int(_EXPLORE or 60),
    derandomize=_EXPLORE is None,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ------------------------------------------------------------------ damaging a valid file
CELLS = st.one_of(
    st.integers(-3, 40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "nan", "NaN", "inf", "-1", "1e309", "0x1A", "1,5", '"', "'", "a b", "\\", "::", "\x00"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8),
)


@st.composite
def damaged(draw: st.DrawFn, lines: list[list[str]], sep: str) -> bytes:
    """``lines`` (header first) joined by ``sep`` after a few random damages, as bytes."""
    rows = [list(r) for r in lines]
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["cell", "extra", "drop", "header", "blank", "dup"]))
        row = draw(st.integers(0, len(rows) - 1))
        if kind == "cell" and rows[row]:
            rows[row][draw(st.integers(0, len(rows[row]) - 1))] = draw(CELLS)
        elif kind == "extra":
            rows[row].append(draw(CELLS))
        elif kind == "drop" and rows[row]:
            rows[row].pop(draw(st.integers(0, len(rows[row]) - 1)))
        elif kind == "header" and rows[0]:
            rows[0][draw(st.integers(0, len(rows[0]) - 1))] = draw(
                st.sampled_from(["", "x", "user_id:float", "item:seq", ":", "a:b:c"]) | CELLS
            )
        elif kind == "blank":
            rows.insert(row + 1, [])
        elif kind == "dup":
            rows.insert(row, list(rows[row]))
    rows = rows[: draw(st.integers(1, len(rows)))]  # maybe only a header, maybe fewer rows
    data = "\n".join(sep.join(r) for r in rows).encode("utf-8", errors="surrogatepass")
    tail = draw(st.sampled_from(["none", "truncate", "latin1", "binary", "crlf"]))
    if tail == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif tail == "latin1":
        data += b"\n\xe9\xff\xfe" + sep.encode() + b"1"
    elif tail == "binary":
        data = draw(st.binary(max_size=64)) + data
    elif tail == "crlf":
        data = data.replace(b"\n", b"\r\n")
    return data


def _assert_outcome(read: Callable[[], Dataset], names: list[Path]) -> None:
    """``read()`` gives a valid dataset, or a ModalRecError naming one of the files in ``names``."""
    try:
        ds = read()
    except ModalRecError as err:
        message = str(err)
        assert "Traceback" not in message
        assert any(str(path) in message for path in names), f"error names no file: {message}"
        line = re.search(r", line (\d+):", message)
        if line:
            assert int(line.group(1)) >= 1, message
        return
    ds.validate()
    assert ds.n_interactions > 0


def _workdir() -> Path:
    """A fresh folder per example (hypothesis reruns the test body many times in one pytest test)."""
    return Path(tempfile.mkdtemp(prefix="modalrec-fuzz-"))


# ------------------------------------------------------------------ CSV / TSV tables and `data import`
TABLE = [
    ["user_id", "item_id", "rating", "timestamp"],
    ["u1", "i1", "5", "100"],
    ["u1", "i2", "3", "200"],
    ["u2", "i1", "4", "300"],
    ["u3", "i3", "1", "400"],
]


@FUZZ
@given(data=st.data(), suffix=st.sampled_from([".csv", ".tsv", ".csv.gz", ".txt"]))
def test_table_reader_and_import_on_malformed_tables(data: st.DataObject, suffix: str) -> None:
    work = _workdir()
    try:
        sep = "\t" if suffix == ".tsv" else data.draw(st.sampled_from([",", ",", ";", "|"]))
        content = data.draw(damaged(TABLE, sep))
        if suffix.endswith(".gz"):
            content = gzip.compress(content)
            if data.draw(st.booleans()):
                content = content[: data.draw(st.integers(0, len(content)))]  # a broken gzip stream
        path = work / f"interactions{suffix}"
        path.write_bytes(content)
        _assert_outcome(lambda: read_table(path), [path])

        out = work / "imported"
        with mock.patch.object(sys, "argv", ["modalrec", "data", "import", str(path), "--out", str(out)]):
            try:
                cli.main()
                code = 0
            except SystemExit as exited:
                code = exited.code
        if code == 0:
            assert (out / "meta.json").is_file()
        else:
            assert code == 2 and not out.exists(), "a failed import left a folder behind"
            assert not [p for p in work.iterdir() if p.name.startswith(".imported")], "a failed import left a staging folder"
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------ RecBole atomic files
INTER = [
    ["user_id:token", "item_id:token", "rating:float", "timestamp:float"],
    ["1", "10", "5", "881250949"],
    ["1", "11", "3", "881250950"],
    ["2", "10", "4", "881250951"],
    ["3", "12", "1", "881250952"],
]
ITEM = [
    ["item_id:token", "movie_title:token_seq", "release_year:token", "class:token_seq"],
    ["10", "Toy Story", "1995", "Animation Comedy"],
    ["11", "Heat", "1995", "Action"],
    ["12", "Up", "2009", "Animation"],
]


@FUZZ
@given(data=st.data(), with_item=st.booleans())
def test_recbole_reader_on_malformed_atomic_files(data: st.DataObject, with_item: bool) -> None:
    work = _workdir()
    try:
        inter = work / "toy.inter"
        inter.write_bytes(data.draw(damaged(INTER, "\t")))
        files = [inter, work]
        if with_item:
            (work / "toy.item").write_bytes(data.draw(damaged(ITEM, "\t")))
            files.append(work / "toy.item")
        _assert_outcome(lambda: read_recbole(work, name="toy"), files)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------ MMRec folders
MMREC = [
    ["userID", "itemID", "rating", "timestamp", "x_label"],
    ["0", "0", "5", "1", "0"],
    ["0", "1", "4", "2", "1"],
    ["0", "2", "4", "3", "2"],
    ["1", "1", "3", "4", "0"],
    ["1", "2", "2", "5", "1"],
    ["1", "0", "1", "6", "2"],
]


@st.composite
def feature_file(draw: st.DrawFn) -> bytes:
    """A .npy of a plausible or wrong shape / dtype, or bytes that are not a .npy at all."""
    import io

    kind = draw(st.sampled_from(["ok", "rows", "1d", "3d", "object", "garbage", "truncated", "nan"]))
    shape = {"ok": (3, 4), "rows": (draw(st.integers(0, 6)), 4), "1d": (3,), "3d": (3, 2, 2)}.get(kind, (3, 4))
    if kind == "garbage":
        return draw(st.binary(max_size=200))
    buffer = io.BytesIO()
    if kind == "object":
        np.save(buffer, np.array([{"a": 1}, None, "x"], dtype=object), allow_pickle=True)  # must never be unpickled
    else:
        matrix = np.ones(shape, dtype=np.float32)
        if kind == "nan":
            matrix[0, 0] = np.nan
        np.save(buffer, matrix)
    raw = buffer.getvalue()
    return raw[: len(raw) // 2] if kind == "truncated" else raw


@FUZZ
@given(
    data=st.data(), features=st.lists(st.sampled_from(["image_feat.npy", "text_feat.npy"]), unique=True), mapping=st.booleans()
)
def test_mmrec_reader_on_malformed_folders(data: st.DataObject, features: list[str], mapping: bool) -> None:
    work = _workdir()
    try:
        inter = work / "baby.inter"
        inter.write_bytes(data.draw(damaged(MMREC, "\t")))
        files = [inter, work]
        for name in features:
            (work / name).write_bytes(data.draw(feature_file()))
            files.append(work / name)
        if mapping:
            (work / "i_id_mapping.csv").write_bytes(
                data.draw(damaged([["asin", "itemID"], ["A1", "0"], ["A2", "1"], ["A3", "2"]], "\t"))
            )
            files.append(work / "i_id_mapping.csv")
        _assert_outcome(lambda: read_mmrec(work, name="baby"), files)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------ UniSRec downstream files
UNISREC = {
    "train": [["user_id:token", "item_id_list:token_seq", "item_id:token"], ["0", "0", "1"], ["1", "2", "1"]],
    "valid": [["user_id:token", "item_id_list:token_seq", "item_id:token"], ["0", "0 1", "2"], ["1", "2 1", "0"]],
    "test": [["user_id:token", "item_id_list:token_seq", "item_id:token"], ["0", "0 1 2", "3"], ["1", "2 1 0", "3"]],
}


@FUZZ
@given(data=st.data(), index=st.booleans(), text=st.booleans())
def test_unisrec_reader_on_malformed_files(data: st.DataObject, index: bool, text: bool) -> None:
    work = _workdir()
    try:
        files = [work, work / "Sci"]
        for part, lines in UNISREC.items():
            path = work / f"Sci.{part}.inter"
            path.write_bytes(
                data.draw(damaged(lines, "\t")) if data.draw(st.booleans()) else "\n".join("\t".join(r) for r in lines).encode()
            )
            files.append(path)
        if index:
            path = work / "Sci.item2index"
            path.write_bytes(data.draw(damaged([["A0", "0"], ["A1", "1"], ["A2", "2"], ["A3", "3"]], "\t")))
            files.append(path)
        if text:
            path = work / "Sci.text"
            path.write_bytes(data.draw(damaged([["item_id:token", "text:token_seq"], ["0", "a pen"], ["1", "ink"]], "\t")))
            files.append(path)
        _assert_outcome(lambda: read_unisrec(work, prefix="Sci"), files)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------ the config parser
KEYS = [
    "model",
    "dataset",
    "dataset.name",
    "train.lr",
    "train.epochs",
    "train.batch_size",
    "train.seed",
    "eval.ks",
    "eval.metrics",
    "model.dim",
    "train",
    "run.dir",
    "dataset.split.method",
    "train.select",
    "nope",
    "train.nope",
    "",
]
VALUES = st.one_of(
    st.integers(-5, 5).map(str),
    st.sampled_from(
        [
            "",
            "1e-3",
            "[10, 20]",
            "[",
            "]",
            "{a: 1}",
            "null",
            "true",
            "nan",
            "-inf",
            "bpr",
            "x=y",
            "!!python/object:os.system",
            "&a",
            "*a",
            "'",
            "\t",
        ]
    ),
    st.text(max_size=6),
)


@FUZZ
@given(
    overrides=st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(["=", "==", ":", ""]), VALUES).map("".join), max_size=5)
)
def test_config_overrides_fail_with_a_config_error(overrides: list[str]) -> None:
    try:
        cfg = resolve(overrides)
    except ModalRecError as err:
        message = str(err)
        keys = [o.split("=", 1)[0].strip() for o in overrides]
        named = [k for k in keys if k] + [f"'{o}'" for o in overrides]  # the key, or the whole override quoted
        assert any(n in message for n in named) or "unknown model" in message, (overrides, message)
        return
    assert cfg.model_name


YAML_SNIPPETS = st.sampled_from(
    [
        "model: bpr\n",
        "train:\n  lr: 0.01\n",
        "train: [1, 2]\n",
        "train:\n  epochs: many\n",
        "dataset: {name: ml-100k, split: 3}\n",
        "eval:\n  ks: abc\n",
        "- a\n- b\n",
        "model: !!python/object/apply:os.system ['touch /tmp/x']\n",
        "a: &x 1\nb: *y\n",
        "train:\n\tlr: 1\n",
        "{",
        "key: 'unterminated\n",
        "\x00",
        "model:\n  dim: -3\n",
        "train:\n  lrr: 1\n",
        "",
    ]
)


@FUZZ
@given(parts=st.lists(YAML_SNIPPETS, min_size=1, max_size=4), noise=st.binary(max_size=16))
def test_config_files_fail_naming_the_file(parts: list[str], noise: bytes) -> None:
    work = _workdir()
    try:
        path = work / "config.yaml"
        path.write_bytes("".join(parts).encode() + noise)
        try:
            load_yaml(path)
            resolve(config_file=path)
        except ModalRecError as err:
            message = str(err)
            assert str(path) in message or re.search(r"'[\w.]+'", message), message  # the file, or the key
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize("reader", ["table", "recbole", "mmrec", "unisrec"])
def test_a_valid_file_reads(reader: str, tmp_path: Path) -> None:
    """The seeds the fuzzers damage are valid, so the properties above exercise the full read path."""
    if reader == "table":
        path = tmp_path / "t.csv"
        path.write_text("\n".join(",".join(r) for r in TABLE))
        ds = read_table(path)
    elif reader == "recbole":
        (tmp_path / "toy.inter").write_text("\n".join("\t".join(r) for r in INTER))
        (tmp_path / "toy.item").write_text("\n".join("\t".join(r) for r in ITEM))
        ds = read_recbole(tmp_path, name="toy")
    elif reader == "mmrec":
        (tmp_path / "baby.inter").write_text("\n".join("\t".join(r) for r in MMREC))
        ds = read_mmrec(tmp_path, name="baby")
    else:
        for part, lines in UNISREC.items():
            (tmp_path / f"Sci.{part}.inter").write_text("\n".join("\t".join(r) for r in lines))
        ds = read_unisrec(tmp_path, prefix="Sci")
    assert ds.n_interactions >= 4
