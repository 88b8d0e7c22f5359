"""Ratings from PostgreSQL tables: the loader command, then the DAG's source through the Postgres hook."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from include.recommender.loading import load_movielens
from include.recommender.schema import DataValidationError
from include.recommender.snapshot import fingerprint
from include.recommender.synthetic import write_movielens
from mlflow_governance.data_sources import load_training_data, parse_postgres_source
from tests.services.conftest import fresh_database

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]
SOURCE = "synthetic:n_users=60,n_movies=200,n_ratings=4000,seed=5"
CONN_ID = "ratings_test_conn"


@pytest.fixture(scope="module")
def ratings_db() -> str:
    """A fresh PostgreSQL database for the module's warehouse tables."""
    with fresh_database("ratings_test") as url:
        yield url


@pytest.fixture
def ratings_conn(ratings_db, monkeypatch) -> str:
    """The Airflow connection ratings_test_conn, pointing at the module's database."""
    monkeypatch.setenv("AIRFLOW_CONN_RATINGS_TEST_CONN", _airflow_connection(ratings_db))
    return ratings_db


def _airflow_connection(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return json.dumps(
        {"conn_type": "postgres", "host": parts.hostname, "port": parts.port or 5432,
         "login": parts.username, "password": parts.password, "schema": parts.path.lstrip("/")}
    )


def load_warehouse(*args: str) -> subprocess.CompletedProcess:
    """Run scripts/load_warehouse.py as a user would (the test's environment holds the connection)."""
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "load_warehouse.py"), *args],
        capture_output=True, text=True, timeout=180,
    )


def test_loader_command_then_the_dag_source_reads_the_same_data(ratings_conn):
    written = load_warehouse("--conn-id", CONN_ID, "--source", SOURCE)
    assert written.returncode == 0, written.stderr
    expected = load_movielens(SOURCE)
    assert f"Wrote {len(expected.ratings)} ratings to ratings and {len(expected.movies)} movies" in written.stdout
    assert fingerprint(expected.ratings) in written.stdout
    assert f"data_source=postgres://{CONN_ID}" in written.stdout

    data = load_training_data(f"postgres://{CONN_ID}")
    assert data.source == f"postgres://{CONN_ID}"
    assert fingerprint(data.ratings) == fingerprint(expected.ratings)
    # Same rows, order and dtypes: the model trained on either source is the same model.
    pd.testing.assert_frame_equal(data.ratings, expected.ratings)
    pd.testing.assert_frame_equal(data.movies, expected.movies)

    # Loading again does not silently overwrite; --replace does.
    # The rest through --url: one Airflow import per test is enough.
    again = load_warehouse("--url", ratings_conn, "--source", SOURCE)
    assert again.returncode == 2
    assert "table movies: already exists" in again.stderr
    replaced = load_warehouse("--url", ratings_conn, "--source", SOURCE.replace("seed=5", "seed=6"), "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert fingerprint(load_training_data(f"postgres://{CONN_ID}").ratings) == fingerprint(
        load_movielens(SOURCE.replace("seed=5", "seed=6")).ratings
    )


def test_a_downloaded_movielens_zip_under_a_table_prefix(ratings_conn, tmp_path):
    """--download unpacks a MovieLens zip (here a file:// URL: no network in tests)."""
    expected = load_movielens("synthetic:n_users=30,n_movies=80,n_ratings=900,seed=9")
    folder = write_movielens(expected, tmp_path / "ml-tiny")
    archive = tmp_path / "ml-tiny.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for name in ("ratings.csv", "movies.csv"):
            bundle.write(folder / name, f"ml-tiny/{name}")

    written = load_warehouse("--url", ratings_conn, "--download", archive.as_uri(), "--table-prefix", "dl_")
    assert written.returncode == 0, written.stderr
    assert "to dl_ratings and" in written.stdout

    data = load_training_data(f"postgres://{CONN_ID}/dl_")
    pd.testing.assert_frame_equal(data.ratings, expected.ratings)
    pd.testing.assert_frame_equal(data.movies, expected.movies)


def test_loader_refuses_bad_input_without_touching_the_database(ratings_conn, tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,9.0,100\n")
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,A,Drama\n")
    refused = load_warehouse("--url", ratings_conn, "--source", str(tmp_path), "--table-prefix", "never_")
    assert refused.returncode == 2
    assert "ratings.csv: 1 rating(s) outside 0.5..5.0" in refused.stderr
    with psycopg.connect(ratings_conn) as conn:
        assert conn.execute("SELECT to_regclass('never_ratings'), to_regclass('never_movies')").fetchone() == (None, None)


# Tables written with raw SQL, as another tool might leave them.
GOOD_MOVIES = 'CREATE TABLE {p}movies ("movieId" BIGINT, title TEXT, genres TEXT); INSERT INTO {p}movies VALUES (1, \'A\', \'Drama\'), (2, \'B\', \'Comedy\')'
BAD_TABLES = {
    "missing_column": (
        'CREATE TABLE {p}ratings ("userId" BIGINT, "movieId" BIGINT, "timestamp" BIGINT); '
        "INSERT INTO {p}ratings VALUES (1, 1, 100)",
        r"table {p}ratings: missing column\(s\) 'rating'",
    ),
    "out_of_range": (
        'CREATE TABLE {p}ratings ("userId" BIGINT, "movieId" BIGINT, rating NUMERIC(3,1), "timestamp" BIGINT); '
        "INSERT INTO {p}ratings VALUES (1, 1, 4.5, 100), (1, 2, 7.0, 200)",
        r"table {p}ratings: 1 rating\(s\) outside 0.5..5.0, e.g. 7.0 \(data row 2\)",
    ),
    "null_rating": (
        'CREATE TABLE {p}ratings ("userId" BIGINT, "movieId" BIGINT, rating REAL, "timestamp" BIGINT); '
        "INSERT INTO {p}ratings VALUES (1, 1, NULL, 100)",
        r"table {p}ratings: 1 missing value\(s\) \(NaN/empty\) in column 'rating'",
    ),
    "unknown_movie": (
        'CREATE TABLE {p}ratings ("userId" BIGINT, "movieId" BIGINT, rating REAL, "timestamp" BIGINT); '
        "INSERT INTO {p}ratings VALUES (1, 1, 4.0, 100), (1, 99, 3.0, 100)",
        r"table {p}ratings: 1 rating\(s\) whose movieId is not in postgres://ratings_test_conn/{p} table {p}movies",
    ),
    "no_table": ("", r"table {p}ratings: no such table"),
    # Lower-cased names (an unquoted CREATE TABLE) are read as MovieLens columns, then checked.
    "lowercase_duplicates": (
        "CREATE TABLE {p}ratings (userid BIGINT, movieid BIGINT, rating REAL, timestamp BIGINT); "
        "INSERT INTO {p}ratings VALUES (1, 1, 4.0, 100), (1, 1, 3.0, 200)",
        r"table {p}ratings: 1 duplicate \(userId, movieId\) pair\(s\), e.g. \(1, 1\)",
    ),
}


@pytest.mark.parametrize("case", list(BAD_TABLES))
def test_bad_table_content_names_the_table_and_the_problem(ratings_conn, case):
    prefix = f"{case}_"
    ddl, message = (text.format(p=prefix) for text in BAD_TABLES[case])
    with psycopg.connect(ratings_conn, autocommit=True) as conn:
        for statement in filter(None, (GOOD_MOVIES.format(p=prefix) + ";" + ddl).split(";")):
            conn.execute(statement)
    with pytest.raises(DataValidationError, match=message):
        load_training_data(f"postgres://{CONN_ID}/{prefix}")


def test_lowercase_columns_are_read_as_movielens_columns(ratings_conn):
    with psycopg.connect(ratings_conn, autocommit=True) as conn:
        conn.execute(GOOD_MOVIES.format(p="lower_").split(";")[0])
        conn.execute(GOOD_MOVIES.format(p="lower_").split(";")[1])
        conn.execute("CREATE TABLE lower_ratings (userid BIGINT, movieid BIGINT, rating REAL, timestamp BIGINT)")
        conn.execute("INSERT INTO lower_ratings VALUES (2, 1, 4.0, 100), (1, 2, 3.5, 50)")
    data = load_training_data(f"postgres://{CONN_ID}/lower_")
    assert list(data.ratings.columns) == ["userId", "movieId", "rating", "timestamp"]
    assert data.ratings.to_dict(orient="list") == {
        "userId": [1, 2], "movieId": [2, 1], "rating": [3.5, 4.0], "timestamp": [50, 100],
    }


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("postgres://user:secret@db:5432/ratings", "is not a connection id"),
        ("postgres://", "is not a connection id"),
        ("postgres://ratings_test_conn/bad-prefix", "bad table prefix 'bad-prefix'"),
        ("postgres://ratings_test_conn/x; DROP TABLE ratings", "bad table prefix"),
    ],
)
def test_malformed_postgres_sources_are_refused(source, message):
    with pytest.raises(DataValidationError, match=message):
        parse_postgres_source(source)


def test_an_unknown_connection_is_a_data_error_not_a_retry(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_CONN", raising=False)
    with pytest.raises(DataValidationError, match="no Airflow connection 'no_such_conn'"):
        load_training_data("postgres://no_such_conn")
