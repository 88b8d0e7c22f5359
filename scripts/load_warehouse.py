"""Put MovieLens ratings and movies into the PostgreSQL warehouse the retrain DAG can read.

The data is generated (``--source synthetic:n_ratings=20000,seed=7``), read from a local
MovieLens directory (``--source path/to/ml-latest-small``) or downloaded
(``--download ml-latest-small``, or the URL of a MovieLens zip). It is validated like every
other source, then written to the tables ``<prefix>ratings`` and ``<prefix>movies`` in one
transaction. The DAG then reads it with ``data_source=postgres://<conn_id>[/<prefix>]``.

Examples::

    # The docker-compose stack (Airflow connection ratings_warehouse, made by airflow-init):
    docker compose exec -T airflow-scheduler python - --conn-id ratings_warehouse \\
        --download ml-latest-small < scripts/load_warehouse.py
    # Any PostgreSQL database:
    python scripts/load_warehouse.py --url postgresql://ratings@localhost:5432/ratings --replace
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

# Importable as `include.*` when run as a file from a checkout (the stack's images put the
# project on PYTHONPATH instead, and `python - < this file` has no file to start from).
_HERE = Path(__file__).resolve() if "__file__" in globals() else None
if _HERE is not None and _HERE.is_file() and (_HERE.parents[1] / "include").is_dir():
    sys.path.insert(0, str(_HERE.parents[1]))

from include.recommender.loading import load_movielens  # noqa: E402
from include.recommender.schema import DataValidationError, MovieLensData  # noqa: E402
from include.recommender.snapshot import fingerprint  # noqa: E402
from include.recommender.warehouse import table_names, write_movielens  # noqa: E402

GROUPLENS = "https://files.grouplens.org/datasets/movielens/{name}.zip"
# Datasets in the ratings.csv/movies.csv layout (ml-100k and ml-1m use older formats).
KNOWN_DATASETS = ("ml-latest-small", "ml-latest", "ml-25m", "ml-32m")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    :param argv: arguments (default: sys.argv[1:]).
    """
    parser = argparse.ArgumentParser(
        prog="load_warehouse.py",
        description="Load MovieLens ratings and movies into PostgreSQL tables for the retrain DAG "
        "(data_source=postgres://<conn_id>[/<table prefix>]).",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--conn-id", help="Airflow connection of the database (e.g. ratings_warehouse)")
    target.add_argument("--url", help="PostgreSQL connection URL, e.g. postgresql://user:password@host:5432/db")
    data = parser.add_mutually_exclusive_group()
    data.add_argument(
        "--source",
        default="synthetic",
        help="'synthetic' (default), 'synthetic:n_ratings=20000,seed=7' or a MovieLens directory "
        "with ratings.csv and movies.csv (or .parquet)",
    )
    data.add_argument(
        "--download",
        metavar="DATASET_OR_URL",
        help=f"download a MovieLens zip: {', '.join(KNOWN_DATASETS)} (from GroupLens) or a URL",
    )
    parser.add_argument(
        "--table-prefix",
        default="",
        help="write <prefix>ratings and <prefix>movies (default: ratings and movies); "
        "may start with a schema, e.g. 'analytics.'",
    )
    parser.add_argument("--replace", action="store_true", help="drop and recreate existing tables")
    return parser.parse_args(argv)


def download_movielens(name_or_url: str, directory: Path) -> Path:
    """Download and unpack a MovieLens zip; return the folder holding ratings.csv and movies.csv.

    :param name_or_url: a GroupLens dataset name (KNOWN_DATASETS) or the URL of a zip.
    :param directory: where to unpack.
    """
    url = GROUPLENS.format(name=name_or_url) if name_or_url in KNOWN_DATASETS else name_or_url
    if "://" not in url:
        raise DataValidationError(f"{name_or_url!r}: neither a known dataset ({', '.join(KNOWN_DATASETS)}) nor a URL")
    archive = directory / "movielens.zip"
    print(f"Downloading {url}", flush=True)
    with urllib.request.urlopen(url, timeout=60) as response, archive.open("wb") as out:
        while chunk := response.read(1 << 20):
            out.write(chunk)
    try:
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(directory / "unpacked")
    except zipfile.BadZipFile as exc:
        raise DataValidationError(f"{url}: not a zip archive ({exc})") from exc
    found = sorted(path.parent for path in (directory / "unpacked").rglob("ratings.csv"))
    if not found:
        raise DataValidationError(f"{url}: the archive has no ratings.csv")
    return found[0]


def connect(args: argparse.Namespace):
    """Open a DB-API connection from --conn-id (Airflow's Postgres hook) or --url.

    :param args: parsed arguments.
    """
    if args.conn_id:
        from airflow.exceptions import AirflowNotFoundException
        from airflow.models.connection import Connection
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        # Outside a task the Task SDK looks at environment variables and external secrets
        # backends only; the core lookup also reads connections stored in the metadata database
        # (where the stack's airflow-init puts ratings_warehouse).
        try:
            connection = Connection.get_connection_from_secrets(args.conn_id)
        except AirflowNotFoundException:
            raise SystemExit(
                f"load_warehouse: no Airflow connection {args.conn_id!r} (create it, or set "
                f"AIRFLOW_CONN_{args.conn_id.upper()}, or pass --url)"
            ) from None
        return PostgresHook(postgres_conn_id=args.conn_id, connection=connection).get_conn()
    try:
        import psycopg
    except ImportError:
        import psycopg2

        return psycopg2.connect(args.url)
    return psycopg.connect(args.url)


def load_data(args: argparse.Namespace, scratch: Path) -> MovieLensData:
    """The validated dataset named by --source or --download.

    :param args: parsed arguments.
    :param scratch: a temporary folder for downloads.
    """
    if args.download:
        return load_movielens(str(download_movielens(args.download, scratch)))
    return load_movielens(args.source)


def main(argv: list[str] | None = None) -> int:
    """Load the dataset into the warehouse; return the exit status.

    :param argv: arguments (default: sys.argv[1:]).
    """
    args = parse_args(argv)
    try:
        table_names(args.table_prefix)
        with tempfile.TemporaryDirectory(prefix="load-warehouse-") as scratch:
            data = load_data(args, Path(scratch))
    except DataValidationError as exc:
        print(f"load_warehouse: {exc}", file=sys.stderr)
        return 2
    target = f"connection {args.conn_id}" if args.conn_id else "the database at --url"
    conn = connect(args)
    try:
        ratings_table, movies_table = write_movielens(conn, data, prefix=args.table_prefix, replace=args.replace)
        conn.commit()
    except DataValidationError as exc:
        conn.rollback()
        print(f"load_warehouse: {exc}", file=sys.stderr)
        return 2
    finally:
        conn.close()
    source = f"postgres://{args.conn_id}" + (f"/{args.table_prefix}" if args.table_prefix else "")
    print(
        f"Wrote {len(data.ratings)} ratings to {ratings_table} and {len(data.movies)} movies to "
        f"{movies_table} through {target} (ratings {fingerprint(data.ratings)})."
    )
    if args.conn_id:
        print(f"Train on them with the DAG param data_source={source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
