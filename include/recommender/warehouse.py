"""Write MovieLens ratings and movies to PostgreSQL tables and read them back, validated.

Plain SQL over a DB-API connection of a PostgreSQL driver with the ``%s`` parameter style
(psycopg 3, which the Airflow Postgres provider hands out, or psycopg2). The caller owns the
connection and its transaction: writers do not commit. Tables keep the MovieLens column names
(quoted, so ``"userId"`` keeps its case); readers also accept the lower-cased names an unquoted
``CREATE TABLE`` leaves behind. Read data passes the same checks as the file loader
(include.recommender.loading) and errors name the table and the problem.
"""

from __future__ import annotations

import math
import re
from contextlib import closing
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from include.recommender.loading import validate_movies, validate_ratings
from include.recommender.schema import MOVIES_COLUMNS, RATINGS_COLUMNS, DataValidationError, MovieLensData

RATINGS_TABLE = "ratings"
MOVIES_TABLE = "movies"
# An optional schema, then a table name: plain identifiers only, so names never need escaping.
_TABLE_NAME = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$")
# Rows per INSERT statement: few round trips, far below PostgreSQL's 65535-parameter limit.
_BATCH_ROWS = 1000

_RATINGS_DDL = (
    '"userId" BIGINT NOT NULL, "movieId" BIGINT NOT NULL, "rating" DOUBLE PRECISION NOT NULL, '
    '"timestamp" BIGINT NOT NULL, PRIMARY KEY ("userId", "movieId")'
)
_MOVIES_DDL = '"movieId" BIGINT PRIMARY KEY, "title" TEXT NOT NULL, "genres" TEXT NOT NULL'


def table_names(prefix: str = "") -> tuple[str, str]:
    """Return the (ratings, movies) table names for a prefix, e.g. "ml_" -> ml_ratings, ml_movies.

    :param prefix: prepended to "ratings" and "movies"; may start with a schema ("analytics.").
    """
    names = (f"{prefix}{RATINGS_TABLE}", f"{prefix}{MOVIES_TABLE}")
    for name in names:
        check_table_name(name)
    return names


def check_table_name(table: str) -> str:
    """Return the table name if it is a plain (optionally schema-qualified) identifier, else raise.

    :param table: e.g. "ratings" or "analytics.ratings".
    """
    if not isinstance(table, str) or not _TABLE_NAME.match(table):
        raise DataValidationError(
            f"table name {table!r} is not a plain identifier (letters, digits, '_', optionally "
            "'schema.' in front)"
        )
    return table


def write_movielens(
    conn: Any, data: MovieLensData, *, prefix: str = "", replace: bool = False
) -> tuple[str, str]:
    """Write validated movies and ratings into <prefix>movies and <prefix>ratings.

    :param conn: an open DB-API connection (not committed here).
    :param data: the dataset to store.
    :param prefix: table name prefix (see table_names).
    :param replace: drop existing tables first; otherwise an existing table is an error.
    """
    ratings_table, movies_table = table_names(prefix)
    # Check everything before touching the database, so a bad dataset leaves no half-written tables.
    movies = validate_movies(data.movies, f"{data.source} movies")
    ratings = validate_ratings(data.ratings, f"{data.source} ratings")
    check_movie_references(ratings, movies, f"{data.source} ratings", f"{data.source} movies")
    write_movies(conn, movies, movies_table, replace=replace)
    write_ratings(conn, ratings, ratings_table, replace=replace)
    return ratings_table, movies_table


def write_ratings(conn: Any, ratings: pd.DataFrame, table: str, *, replace: bool = False) -> int:
    """Create the ratings table and insert the validated ratings; return the row count.

    :param conn: an open DB-API connection (not committed here).
    :param ratings: ratings with RATINGS_COLUMNS.
    :param table: target table (optionally schema-qualified).
    :param replace: drop an existing table first; otherwise an existing table is an error.
    """
    ratings = validate_ratings(ratings, f"ratings for table {table}")
    rows = _python_rows(ratings, RATINGS_COLUMNS)
    return _create_and_insert(conn, table, _RATINGS_DDL, RATINGS_COLUMNS, rows, replace)


def write_movies(conn: Any, movies: pd.DataFrame, table: str, *, replace: bool = False) -> int:
    """Create the movies table and insert the validated movies; return the row count.

    :param conn: an open DB-API connection (not committed here).
    :param movies: movies with MOVIES_COLUMNS.
    :param table: target table (optionally schema-qualified).
    :param replace: drop an existing table first; otherwise an existing table is an error.
    """
    movies = validate_movies(movies, f"movies for table {table}")
    rows = _python_rows(movies, MOVIES_COLUMNS)
    return _create_and_insert(conn, table, _MOVIES_DDL, MOVIES_COLUMNS, rows, replace)


def read_movielens(conn: Any, *, prefix: str = "", source: str, cutoff: datetime | None = None) -> MovieLensData:
    """Read and validate <prefix>ratings and <prefix>movies into MovieLensData.

    :param conn: an open DB-API connection.
    :param prefix: table name prefix (see table_names).
    :param source: the source string recorded on the data and named in errors.
    :param cutoff: only ratings strictly before this instant (None = all); naive means UTC.
    """
    ratings_table, movies_table = table_names(prefix)
    ratings_where, movies_where = f"{source} table {ratings_table}", f"{source} table {movies_table}"
    ratings = read_ratings(conn, ratings_table, cutoff, where=ratings_where)
    movies = read_movies(conn, movies_table, where=movies_where)
    check_movie_references(ratings, movies, ratings_where, movies_where)
    return MovieLensData(ratings=ratings, movies=movies, source=source)


def read_ratings(conn: Any, table: str, cutoff: datetime | None = None, *, where: str | None = None) -> pd.DataFrame:
    """Return the validated ratings of a table, ordered by (userId, movieId).

    :param conn: an open DB-API connection.
    :param table: the ratings table (optionally schema-qualified).
    :param cutoff: only ratings strictly before this instant (None = all); naive means UTC.
    :param where: how errors name the table (default "table <table>").
    """
    where = where or f"table {table}"
    columns = _column_map(conn, table, RATINGS_COLUMNS, where)
    condition, params = "", ()
    if cutoff is not None and "timestamp" in columns:
        condition, params = f" WHERE {_quote(columns['timestamp'])} < %s", (_epoch_bound(cutoff),)
    frame = _select(conn, table, RATINGS_COLUMNS, columns, condition, params, ("userId", "movieId"))
    if cutoff is not None and frame.empty and "timestamp" in columns:
        raise DataValidationError(f"{where}: no ratings before the cutoff {cutoff.isoformat()}")
    return validate_ratings(frame, where)


def read_movies(conn: Any, table: str, *, where: str | None = None) -> pd.DataFrame:
    """Return the validated movies of a table, ordered by movieId.

    :param conn: an open DB-API connection.
    :param table: the movies table (optionally schema-qualified).
    :param where: how errors name the table (default "table <table>").
    """
    where = where or f"table {table}"
    columns = _column_map(conn, table, MOVIES_COLUMNS, where)
    frame = _select(conn, table, MOVIES_COLUMNS, columns, "", (), ("movieId",))
    return validate_movies(frame, where)


def check_movie_references(ratings: pd.DataFrame, movies: pd.DataFrame, ratings_where: str, movies_where: str) -> None:
    """Raise if a rating names a movieId that the movies table lacks.

    :param ratings: validated ratings.
    :param movies: validated movies.
    :param ratings_where: how errors name the ratings.
    :param movies_where: how errors name the movies.
    """
    unknown = ~ratings["movieId"].isin(movies["movieId"]).to_numpy()
    if unknown.any():
        rows = np.flatnonzero(unknown)
        examples = ", ".join(str(int(ratings["movieId"].iat[row])) for row in rows[:3])
        raise DataValidationError(
            f"{ratings_where}: {len(rows)} rating(s) whose movieId is not in {movies_where}, e.g. {examples}"
        )


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _qualified(table: str) -> str:
    return ".".join(_quote(part) for part in check_table_name(table).split("."))


def _table_exists(cursor: Any, table: str) -> bool:
    # to_regclass resolves the name as a query would (search_path, quoting) and returns NULL
    # instead of raising, which would abort the caller's transaction.
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (_qualified(table),))
    (exists,) = _first_values(cursor.fetchone())
    return bool(exists)


def _column_map(conn: Any, table: str, expected: tuple[str, ...], where: str) -> dict[str, str]:
    """Map each expected column to the table's column of that name, case-insensitively if needed."""
    with _cursor(conn) as cursor:
        if not _table_exists(cursor, table):
            raise DataValidationError(f"{where}: no such table")
        cursor.execute(f"SELECT * FROM {_qualified(table)} LIMIT 0")
        found = [column[0] for column in cursor.description]
    mapping = {}
    for name in expected:
        if name in found:
            mapping[name] = name
            continue
        folded = [column for column in found if column.lower() == name.lower()]
        if len(folded) == 1:
            mapping[name] = folded[0]
        elif len(folded) > 1:
            raise DataValidationError(f"{where}: columns {', '.join(map(repr, folded))} are ambiguous for {name!r}")
    missing = [name for name in expected if name not in mapping]
    if missing:
        raise DataValidationError(
            f"{where}: missing column(s) {', '.join(map(repr, missing))} (found: {', '.join(map(repr, found))})"
        )
    return mapping


def _select(
    conn: Any,
    table: str,
    expected: tuple[str, ...],
    columns: dict[str, str],
    condition: str,
    params: tuple,
    order: tuple[str, ...],
) -> pd.DataFrame:
    select = ", ".join(f"{_quote(columns[name])} AS {_quote(name)}" for name in expected)
    order_by = ", ".join(_quote(columns[name]) for name in order)
    with _cursor(conn) as cursor:
        cursor.execute(f"SELECT {select} FROM {_qualified(table)}{condition} ORDER BY {order_by}", params)
        rows = cursor.fetchall()
    if rows and isinstance(rows[0], Mapping):
        # A connection configured with a dict cursor (the provider's "cursor" extra).
        return pd.DataFrame([dict(row) for row in rows], columns=list(expected))
    return pd.DataFrame.from_records([tuple(row) for row in rows], columns=list(expected))


def _create_and_insert(
    conn: Any, table: str, ddl: str, columns: tuple[str, ...], rows: list[tuple], replace: bool
) -> int:
    qualified = _qualified(table)
    with _cursor(conn) as cursor:
        if replace:
            cursor.execute(f"DROP TABLE IF EXISTS {qualified}")
        elif _table_exists(cursor, table):
            raise DataValidationError(
                f"table {table}: already exists; not overwritten (replace=True, or the loader's "
                "--replace, drops it first)"
            )
        cursor.execute(f"CREATE TABLE {qualified} ({ddl})")
        names = ", ".join(map(_quote, columns))
        row_marks = "(" + ", ".join(["%s"] * len(columns)) + ")"
        for start in range(0, len(rows), _BATCH_ROWS):
            batch = rows[start : start + _BATCH_ROWS]
            values = ", ".join([row_marks] * len(batch))
            cursor.execute(f"INSERT INTO {qualified} ({names}) VALUES {values}", [v for row in batch for v in row])
    return len(rows)


def _python_rows(frame: pd.DataFrame, columns: tuple[str, ...]) -> list[tuple]:
    # Drivers adapt Python ints, floats and strs, not numpy scalars.
    return list(zip(*(frame[column].to_numpy().tolist() for column in columns)))


def _epoch_bound(cutoff: datetime) -> int:
    """The smallest integer timestamp not before cutoff: ts < cutoff <=> ts < ceil(cutoff)."""
    if not isinstance(cutoff, datetime):
        raise TypeError(f"cutoff must be a datetime or None, got {type(cutoff).__name__}: {cutoff!r}")
    if cutoff.tzinfo is None:
        cutoff = cutoff.replace(tzinfo=timezone.utc)
    return math.ceil(cutoff.timestamp())


def _first_values(row: Any) -> tuple:
    return tuple(row.values()) if isinstance(row, Mapping) else tuple(row)


def _cursor(conn: Any) -> closing:
    # DB-API cursors need not be context managers; closing() works for every driver.
    return closing(conn.cursor())
