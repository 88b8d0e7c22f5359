"""Schema container and load_movielens: sources, round trips and every bad-input case."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from include.recommender.loading import load_movielens, validate_movies, validate_ratings
from include.recommender.schema import (
    MOVIES_COLUMNS,
    RATINGS_COLUMNS,
    DataValidationError,
    MovieLensData,
)
from include.recommender.synthetic import generate_movielens, write_movielens

RATINGS_CSV = """userId,movieId,rating,timestamp
1,1,4.0,964982703
1,3,4.0,964981247
1,6,4.5,964982224
2,1,3.0,964982931
2,10,5.0,964983815
3,3,0.5,964982400
"""
MOVIES_CSV = """movieId,title,genres
1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy
3,"Grumpier Old Men, The (1995)",Comedy|Romance
6,Heat (1995),Action|Crime|Thriller
10,GoldenEye (1995),(no genres listed)
"""


def _replace(name: str, old: str, new: str):
    def mutate(directory: Path) -> None:
        path = directory / name
        text = path.read_text()
        assert old in text, f"fixture text {old!r} not in {name}"
        path.write_text(text.replace(old, new))

    return mutate


def _write(name: str, content: str | bytes):
    def mutate(directory: Path) -> None:
        path = directory / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())

    return mutate


def _delete(name: str):
    return lambda directory: (directory / name).unlink()


def _to_parquet(name: str, edit=lambda df: df):
    def mutate(directory: Path) -> None:
        csv_path = directory / f"{name}.csv"
        frame = edit(pd.read_csv(csv_path))
        csv_path.unlink()
        frame.to_parquet(directory / f"{name}.parquet", index=False)

    return mutate


@pytest.fixture
def movielens_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "ml"
    directory.mkdir()
    (directory / "ratings.csv").write_text(RATINGS_CSV)
    (directory / "movies.csv").write_text(MOVIES_CSV)
    return directory


# --- schema -------------------------------------------------------------------------------------


def test_schema_constants_and_error_type():
    assert RATINGS_COLUMNS == ("userId", "movieId", "rating", "timestamp")
    assert MOVIES_COLUMNS == ("movieId", "title", "genres")
    assert issubclass(DataValidationError, ValueError)


def test_movielens_data_is_frozen_and_oracle_optional():
    data = MovieLensData(ratings=pd.DataFrame(), movies=pd.DataFrame(), source="x")
    assert data.oracle is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.source = "y"  # type: ignore[misc]


# --- synthetic sources --------------------------------------------------------------------------


def test_synthetic_source_uses_generator_defaults():
    data = load_movielens("synthetic")
    assert len(data.ratings) == 100_836
    assert data.oracle is not None
    assert data.source.startswith("synthetic:") and "seed=42" in data.source


def test_synthetic_source_applies_overrides():
    data = load_movielens(" synthetic:n_ratings=20000, seed=7 ")
    expected = generate_movielens(n_ratings=20_000, seed=7)
    pd.testing.assert_frame_equal(data.ratings, expected.ratings)
    pd.testing.assert_frame_equal(data.movies, expected.movies)
    assert data.source == expected.source


@pytest.mark.parametrize(
    ("source", "fragments"),
    [
        ("synthetic:foo=1,seed=3,bar=x", ["unknown key(s) 'foo', 'bar'", "allowed: n_users"]),
        ("synthetic:n_ratings=lots", ["n_ratings='lots'", "not a valid int"]),
        ("synthetic:seed", ["expected key=value", "'seed'"]),
        ("synthetic:seed=1,seed=2", ["'seed' given more than once"]),
        ("synthetic:n_users=0", ["synthetic:n_users=0", "n_users must be a positive integer"]),
        ("synthetic:start=2026-01-01", ["must be after start"]),
    ],
)
def test_bad_synthetic_sources_are_rejected(source, fragments):
    with pytest.raises(DataValidationError) as excinfo:
        load_movielens(source)
    for fragment in fragments:
        assert fragment in str(excinfo.value)


@pytest.mark.parametrize("source", ["", "   ", None])
def test_blank_source_is_rejected(source):
    with pytest.raises(DataValidationError, match="non-empty string"):
        load_movielens(source)  # type: ignore[arg-type]


# --- round trips --------------------------------------------------------------------------------


def test_csv_round_trip(tmp_path):
    data = generate_movielens(n_users=40, n_movies=300, n_ratings=2500, seed=3)
    loaded = load_movielens(str(write_movielens(data, tmp_path / "csv")))
    pd.testing.assert_frame_equal(loaded.ratings, data.ratings)
    pd.testing.assert_frame_equal(loaded.movies, data.movies)
    assert loaded.source == str((tmp_path / "csv").resolve())
    assert loaded.oracle is None


def test_parquet_round_trip(tmp_path):
    data = generate_movielens(n_users=40, n_movies=300, n_ratings=2500, seed=3)
    directory = tmp_path / "parquet"
    directory.mkdir()
    data.ratings.to_parquet(directory / "ratings.parquet", index=False)
    data.movies.to_parquet(directory / "movies.parquet", index=False)
    loaded = load_movielens(str(directory))
    pd.testing.assert_frame_equal(loaded.ratings, data.ratings)
    pd.testing.assert_frame_equal(loaded.movies, data.movies)


def test_mixed_csv_and_parquet_and_quoted_titles(movielens_dir):
    _to_parquet("movies")(movielens_dir)
    data = load_movielens(str(movielens_dir))
    assert data.movies["title"].tolist()[1] == "Grumpier Old Men, The (1995)"
    assert data.ratings.dtypes.astype(str).tolist() == ["int64", "int64", "float64", "int64"]
    assert data.ratings["rating"].tolist() == [4.0, 4.0, 4.5, 3.0, 5.0, 0.5]


def test_validators_normalise_types_and_drop_extra_columns():
    raw = pd.DataFrame(
        {"userId": ["1", "2"], "movieId": [5.0, 6.0], "rating": ["4", "3.5"], "timestamp": [10, 20], "x": [0, 0]}
    )
    ratings = validate_ratings(raw, "frame")
    assert tuple(ratings.columns) == RATINGS_COLUMNS
    assert ratings.dtypes.astype(str).tolist() == ["int64", "int64", "float64", "int64"]
    movies = validate_movies(pd.DataFrame({"movieId": [5], "title": ["A (2000)"], "genres": ["Drama"]}), "m")
    assert tuple(movies.columns) == MOVIES_COLUMNS


# --- every bad input ----------------------------------------------------------------------------

BAD_INPUTS = [
    # (case id, mutation, file named in the message, fragments that must appear)
    ("missing-ratings-file", _delete("ratings.csv"), "ratings.csv", ["missing file"]),
    ("missing-movies-file", _delete("movies.csv"), "movies.csv", ["missing file"]),
    (
        "missing-columns",
        _write("ratings.csv", "userId,movieId\n1,1\n"),
        "ratings.csv",
        ["missing column(s) 'rating', 'timestamp'"],
    ),
    ("empty-file", _write("ratings.csv", ""), "ratings.csv", ["file is empty"]),
    ("blank-file", _write("movies.csv", "\n\n"), "movies.csv", ["file is empty"]),
    ("header-only", _write("ratings.csv", "userId,movieId,rating,timestamp\n"), "ratings.csv", ["no data rows"]),
    (
        "rating-not-a-number",
        _replace("ratings.csv", "2,1,3.0,", "2,1,abc,"),
        "ratings.csv",
        ["1 unparseable value(s) in column 'rating'", "'abc' (data row 4)"],
    ),
    (
        "timestamp-not-a-number",
        _replace("ratings.csv", "964982703", "yesterday"),
        "ratings.csv",
        ["unparseable value(s) in column 'timestamp'", "'yesterday'"],
    ),
    (
        "empty-rating",
        _replace("ratings.csv", "1,3,4.0,", "1,3,,"),
        "ratings.csv",
        ["missing value(s) (NaN/empty) in column 'rating'", "(data row 2)"],
    ),
    (
        "nan-user",
        _replace("ratings.csv", "3,3,0.5", "NaN,3,0.5"),
        "ratings.csv",
        ["missing value(s) (NaN/empty) in column 'userId'"],
    ),
    (
        "rating-above-range",
        _replace("ratings.csv", "4.0,", "7.0,"),
        "ratings.csv",
        ["2 rating(s) outside 0.5..5.0", "7.0 (data row 1)"],
    ),
    ("rating-zero", _replace("ratings.csv", "0.5,", "0.0,"), "ratings.csv", ["outside 0.5..5.0", "0.0"]),
    ("rating-not-half-star", _replace("ratings.csv", "4.5,", "3.7,"), "ratings.csv", ["half-star", "3.7"]),
    (
        "fractional-user",
        _replace("ratings.csv", "3,3,0.5", "3.5,3,0.5"),
        "ratings.csv",
        ["non-integer value(s) in column 'userId'", "'3.5'"],
    ),
    ("negative-timestamp", _replace("ratings.csv", "964982400", "-5"), "ratings.csv", ["negative timestamp"]),
    (
        "duplicate-pair",
        _replace("ratings.csv", "2,10,5.0", "1,3,5.0"),
        "ratings.csv",
        ["1 duplicate (userId, movieId) pair(s)", "(1, 3) at data rows 2, 5"],
    ),
    (
        "unknown-movie",
        _replace("ratings.csv", "2,10,5.0", "2,77,5.0"),
        "ratings.csv",
        ["movieId is not in", "movies.csv", "77"],
    ),
    (
        "truncated-last-line",
        lambda d: (d / "ratings.csv").write_text(RATINGS_CSV + "3,6,4"),
        "ratings.csv",
        ["looks truncated", "3 of 4 fields", "no newline at the end", "'3,6,4'"],
    ),
    (
        "too-many-fields",
        _replace("ratings.csv", "2,1,3.0,964982931", "2,1,3.0,964982931,9"),
        "ratings.csv",
        ["cannot parse CSV"],
    ),
    ("duplicate-movie", _replace("movies.csv", "10,GoldenEye", "6,GoldenEye"), "movies.csv", ["duplicate movieId", "6"]),
    (
        "empty-title",
        _replace("movies.csv", "Heat (1995)", ""),
        "movies.csv",
        ["missing value(s) (NaN/empty) in column 'title'"],
    ),
    ("missing-genres-column", _write("movies.csv", "movieId,title\n1,A\n"), "movies.csv", ["missing column(s) 'genres'"]),
    ("mangled-genres", _replace("movies.csv", "Comedy|Romance", "Comedy||Romance"), "movies.csv", ["empty entry"]),
    (
        "both-csv-and-parquet",
        lambda d: pd.read_csv(d / "ratings.csv").to_parquet(d / "ratings.parquet"),
        "ratings.parquet",
        ["both exist"],
    ),
    (
        "corrupt-parquet",
        lambda d: (_delete("ratings.csv")(d), _write("ratings.parquet", b"PAR1 nonsense")(d)),
        "ratings.parquet",
        ["cannot read Parquet"],
    ),
    (
        "parquet-rating-text",
        _to_parquet("ratings", lambda df: df.assign(rating=df["rating"].astype(str).replace("3.0", "abc"))),
        "ratings.parquet",
        ["unparseable value(s) in column 'rating'", "'abc'"],
    ),
    (
        "parquet-rating-nan",
        _to_parquet("ratings", lambda df: df.assign(rating=df["rating"].where(df["rating"] != 3.0))),
        "ratings.parquet",
        ["missing value(s) (NaN/empty) in column 'rating'"],
    ),
    (
        "parquet-out-of-range",
        _to_parquet("ratings", lambda df: df.assign(rating=df["rating"] * 2)),
        "ratings.parquet",
        ["5 rating(s) outside 0.5..5.0", "8.0 (data row 1)"],
    ),
]


@pytest.mark.parametrize(
    ("mutate", "bad_file", "fragments"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_names_file_and_problem(movielens_dir, mutate, bad_file, fragments):
    mutate(movielens_dir)
    with pytest.raises(DataValidationError) as excinfo:
        load_movielens(str(movielens_dir))
    message = str(excinfo.value)
    assert str(movielens_dir / bad_file) in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_missing_directory_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataValidationError, match="no such directory") as excinfo:
        load_movielens(str(missing))
    assert str(missing) in str(excinfo.value)


def test_file_instead_of_directory_is_named(movielens_dir):
    path = movielens_dir / "ratings.csv"
    with pytest.raises(DataValidationError, match="not a directory") as excinfo:
        load_movielens(str(path))
    assert str(path) in str(excinfo.value)


def test_validate_ratings_counts_every_bad_row():
    raw = pd.DataFrame(
        {"userId": np.arange(5), "movieId": np.arange(5), "rating": [9.0, 4.0, 9.5, 0.0, 3.0], "timestamp": np.arange(5)}
    )
    with pytest.raises(DataValidationError, match=r"frame: 3 rating\(s\) outside 0.5..5.0, e.g. 9.0 \(data row 1\)"):
        validate_ratings(raw, "frame")
