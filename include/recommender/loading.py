"""Load and validate MovieLens data from the synthetic generator or a local directory.

A source is ``"synthetic"`` (generator defaults), ``"synthetic:key=value,..."`` (overrides of
generate_movielens's arguments, e.g. ``"synthetic:n_ratings=20000,seed=7"``), or a directory
holding ratings.csv|ratings.parquet and movies.csv|movies.parquet. Every problem raises
DataValidationError naming the file (or source) and what is wrong with it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from include.recommender.schema import (
    MOVIES_COLUMNS,
    RATING_MAX,
    RATING_MIN,
    RATINGS_COLUMNS,
    DataValidationError,
    MovieLensData,
)
from include.recommender.synthetic_cache import load_or_generate

SYNTHETIC = "synthetic"
# generate_movielens's keyword arguments and how to parse them from the source string.
SYNTHETIC_PARAMETERS = {
    "n_users": int,
    "n_movies": int,
    "n_ratings": int,
    "seed": int,
    "start": str,
    "end": str,
}
# Text that means "no value" in a numeric column.
_MISSING_TOKENS = {"", "nan", "na", "n/a", "null", "none"}
_MAX_EXAMPLES = 3


def load_movielens(source: str) -> MovieLensData:
    """Load validated MovieLens data from a source string.

    :param source: "synthetic", "synthetic:key=value,..." or a local directory path.
    """
    if not isinstance(source, str) or not source.strip():
        raise DataValidationError(f"data source must be a non-empty string, got {source!r}")
    source = source.strip()
    if source == SYNTHETIC or source.startswith(SYNTHETIC + ":"):
        return _load_synthetic(source)
    return _load_directory(source)


def parse_synthetic_source(source: str) -> dict[str, int | str]:
    """Return the generate_movielens keyword overrides in a "synthetic:key=value,..." source.

    :param source: "synthetic" or "synthetic:key=value,...".
    """
    spec = source[len(SYNTHETIC) :].removeprefix(":")
    overrides: dict[str, int | str] = {}
    unknown = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, value = (text.strip() for text in item.partition("="))
        if not sep or not key:
            raise DataValidationError(f"{source}: expected key=value, got {item!r}")
        if key not in SYNTHETIC_PARAMETERS:
            unknown.append(key)
            continue
        if key in overrides:
            raise DataValidationError(f"{source}: key {key!r} given more than once")
        try:
            overrides[key] = SYNTHETIC_PARAMETERS[key](value)
        except ValueError:
            raise DataValidationError(
                f"{source}: {key}={value!r} is not a valid {SYNTHETIC_PARAMETERS[key].__name__}"
            ) from None
    if unknown:
        raise DataValidationError(
            f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(SYNTHETIC_PARAMETERS)}"
        )
    return overrides


def _load_synthetic(source: str) -> MovieLensData:
    overrides = parse_synthetic_source(source)
    try:
        # Generated once per spec; later loads (other tasks, later runs) read the Parquet cache.
        data = load_or_generate(**overrides)
    except ValueError as exc:
        raise DataValidationError(f"{source}: {exc}") from exc
    # Validate generated data the same way as files, so both paths guarantee one contract.
    validate_ratings(data.ratings, data.source)
    validate_movies(data.movies, data.source)
    return data


def _load_directory(source: str) -> MovieLensData:
    directory = Path(source).expanduser()
    if not directory.exists():
        raise DataValidationError(
            f"{source}: no such directory (a source is 'synthetic', "
            "'synthetic:key=value,...' or a directory with ratings and movies files)"
        )
    if not directory.is_dir():
        raise DataValidationError(f"{source}: not a directory")
    ratings_path = _find_table(directory, "ratings")
    movies_path = _find_table(directory, "movies")
    ratings = validate_ratings(_read_table(ratings_path), str(ratings_path))
    movies = validate_movies(_read_table(movies_path), str(movies_path))
    _check_movie_references(ratings, movies, str(ratings_path), str(movies_path))
    return MovieLensData(ratings=ratings, movies=movies, source=str(directory.resolve()))


def _find_table(directory: Path, name: str) -> Path:
    found = [directory / f"{name}.{ext}" for ext in ("csv", "parquet")]
    found = [path for path in found if path.is_file()]
    if not found:
        raise DataValidationError(f"{directory / name}.csv: missing file (nor {name}.parquet)")
    if len(found) > 1:
        raise DataValidationError(
            f"{found[0]} and {found[1]}: both exist; keep one so the source is unambiguous"
        )
    return found[0]


def _read_table(path: Path) -> pd.DataFrame:
    if path.stat().st_size == 0:
        raise DataValidationError(f"{path}: file is empty")
    if path.suffix == ".parquet":
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise DataValidationError(f"{path}: cannot read Parquet: {exc}") from exc
    _check_last_line(path)
    try:
        # Strings first, so each bad value can be reported rather than failing the whole read.
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError as exc:
        raise DataValidationError(f"{path}: file is empty (no header)") from exc
    except pd.errors.ParserError as exc:
        raise DataValidationError(f"{path}: cannot parse CSV: {str(exc).strip()}") from exc
    except UnicodeDecodeError as exc:
        raise DataValidationError(f"{path}: not UTF-8 text: {exc}") from exc


def _check_last_line(path: Path) -> None:
    """Raise if the last line has fewer fields than the header (a partially written file)."""
    with path.open("rb") as fh:
        header = fh.readline()
        fh.seek(max(0, path.stat().st_size - 65_536))
        tail = fh.read()
    lines = [line for line in tail.splitlines() if line.strip()]
    if not lines or not header.strip():
        return
    last = lines[-1]
    try:
        n_header = len(next(csv.reader([header.decode("utf-8-sig", "replace")])))
        n_last = len(next(csv.reader([last.decode("utf-8", "replace")])))
    except csv.Error as exc:
        # e.g. a lone carriage return inside a line: not a CSV this loader can trust.
        raise DataValidationError(f"{path}: cannot parse CSV: {exc}") from exc
    if n_last < n_header:
        ending = "" if tail.endswith(b"\n") else " and no newline at the end"
        raise DataValidationError(
            f"{path}: file looks truncated: last line has {n_last} of {n_header} fields"
            f"{ending}: {last[:80].decode('utf-8', 'replace')!r}"
        )


def validate_ratings(df: pd.DataFrame, where: str) -> pd.DataFrame:
    """Return ratings with exactly RATINGS_COLUMNS and schema dtypes, or raise.

    :param df: raw ratings (strings from CSV or typed columns from Parquet/pandas).
    :param where: file or source name used in error messages.
    """
    _check_frame(df, RATINGS_COLUMNS, where)
    out = pd.DataFrame(
        {
            "userId": _integers(df["userId"], "userId", where),
            "movieId": _integers(df["movieId"], "movieId", where),
            "rating": _numbers(df["rating"], "rating", where),
            "timestamp": _integers(df["timestamp"], "timestamp", where),
        }
    )
    rating = out["rating"].to_numpy()
    _fail_where((rating < RATING_MIN) | (rating > RATING_MAX), out["rating"], where,
                f"rating(s) outside {RATING_MIN}..{RATING_MAX}")
    _fail_where(rating * 2 != np.round(rating * 2), out["rating"], where,
                "rating(s) not in half-star steps")
    _fail_where(out["timestamp"].to_numpy() < 0, out["timestamp"], where, "negative timestamp(s)")
    duplicated = out.duplicated(["userId", "movieId"], keep="first").to_numpy()
    if duplicated.any():
        first = int(np.flatnonzero(duplicated)[0])
        user, movie = int(out["userId"].iat[first]), int(out["movieId"].iat[first])
        rows = np.flatnonzero((out["userId"] == user).to_numpy() & (out["movieId"] == movie).to_numpy())
        raise DataValidationError(
            f"{where}: {int(duplicated.sum())} duplicate (userId, movieId) pair(s), e.g. "
            f"({user}, {movie}) at data rows {', '.join(str(r + 1) for r in rows[:_MAX_EXAMPLES])}"
        )
    return out


def validate_movies(df: pd.DataFrame, where: str) -> pd.DataFrame:
    """Return movies with exactly MOVIES_COLUMNS and schema dtypes, or raise.

    :param df: raw movies (strings from CSV or typed columns from Parquet/pandas).
    :param where: file or source name used in error messages.
    """
    _check_frame(df, MOVIES_COLUMNS, where)
    out = pd.DataFrame(
        {
            "movieId": _integers(df["movieId"], "movieId", where),
            "title": _texts(df["title"], "title", where),
            "genres": _texts(df["genres"], "genres", where),
        }
    )
    duplicated = out["movieId"].duplicated(keep="first").to_numpy()
    _fail_where(duplicated, out["movieId"], where, "duplicate movieId(s)")
    # "Action||Comedy" or a trailing "|" means a genre list was cut or mangled.
    tokens_ok = out["genres"].str.split("|").map(lambda parts: all(p.strip() for p in parts))
    _fail_where(~tokens_ok.to_numpy(dtype=bool), out["genres"], where, "genres value(s) with an empty entry")
    return out


def _check_movie_references(
    ratings: pd.DataFrame, movies: pd.DataFrame, ratings_where: str, movies_where: str
) -> None:
    unknown = ~ratings["movieId"].isin(movies["movieId"]).to_numpy()
    _fail_where(unknown, ratings["movieId"], ratings_where,
                f"rating(s) whose movieId is not in {movies_where}")


def _check_frame(df: pd.DataFrame, columns: tuple[str, ...], where: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise DataValidationError(f"{where}: expected a DataFrame, got {type(df).__name__}")
    missing = [column for column in columns if column not in df.columns]
    if missing:
        raise DataValidationError(
            f"{where}: missing column(s) {', '.join(map(repr, missing))} "
            f"(found: {', '.join(map(repr, map(str, df.columns)))})"
        )
    if len(df) == 0:
        raise DataValidationError(f"{where}: no data rows (only a header)")


def _numbers(series: pd.Series, column: str, where: str) -> pd.Series:
    """Return the column as float64, raising on unparseable or missing values."""
    if pd.api.types.is_bool_dtype(series):
        raise DataValidationError(f"{where}: column {column!r} holds booleans, expected numbers")
    if pd.api.types.is_numeric_dtype(series):
        values = series.astype("float64")
        missing = values.isna().to_numpy()
    else:
        text = series.astype("str").str.strip()
        missing = (text.isna() | text.str.lower().isin(_MISSING_TOKENS)).to_numpy(dtype=bool)
        try:
            values = text.where(~missing).astype("float64")
        except (TypeError, ValueError):
            # The slow path only runs to find and report the unparseable values.
            values = pd.to_numeric(text.where(~missing), errors="coerce").astype("float64")
            unparseable = values.isna().to_numpy() & ~missing
            _fail_where(unparseable, series, where, f"unparseable value(s) in column {column!r}")
    _fail_where(missing, series, where, f"missing value(s) (NaN/empty) in column {column!r}")
    return values.reset_index(drop=True)


def _integers(series: pd.Series, column: str, where: str) -> pd.Series:
    """Return the column as int64, raising on non-integer, missing or unparseable values."""
    if pd.api.types.is_integer_dtype(series) and not series.isna().any():
        return series.astype("int64").reset_index(drop=True)
    values = _numbers(series, column, where)
    array = values.to_numpy()
    _fail_where(~np.isfinite(array) | (array != np.floor(array)), series, where,
                f"non-integer value(s) in column {column!r}")
    return values.astype("int64")


def _texts(series: pd.Series, column: str, where: str) -> pd.Series:
    """Return the column as str, raising on missing or blank values."""
    text = series.astype("str")
    blank = (text.isna() | text.str.strip().eq("")).to_numpy(dtype=bool)
    _fail_where(blank, series, where, f"missing value(s) (NaN/empty) in column {column!r}")
    return text.reset_index(drop=True)


def _fail_where(bad: np.ndarray, series: pd.Series, where: str, problem: str) -> None:
    """Raise naming the count and first examples (value and 1-based data row) of bad rows."""
    if not bad.any():
        return
    rows = np.flatnonzero(bad)
    examples = ", ".join(
        f"{_plain(series.iat[row])!r} (data row {row + 1})" for row in rows[:_MAX_EXAMPLES]
    )
    raise DataValidationError(f"{where}: {len(rows)} {problem}, e.g. {examples}")


def _plain(value: object) -> object:
    """Return numpy scalars as Python ones so messages read 7.0, not np.float64(7.0)."""
    return value.item() if isinstance(value, np.generic) else value
