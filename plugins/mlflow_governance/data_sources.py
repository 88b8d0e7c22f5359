"""Resolve a DAG's ``data_source`` param to validated MovieLens data.

Sources:

- ``synthetic``, ``synthetic:key=value,...`` or a local directory: the file loader.
- ``s3://bucket/prefix``: ratings and movies files under an S3 prefix (boto3; the endpoint and
  credentials come from the environment, e.g. MLFLOW_S3_ENDPOINT_URL and AWS_ACCESS_KEY_ID).
- ``postgres://<conn_id>[/<table_prefix>]``: the tables ``<table_prefix>ratings`` and
  ``<table_prefix>movies`` of the database behind Airflow connection ``conn_id``, read through
  the Postgres provider's hook (``postgres://ratings_warehouse`` reads ``ratings`` and ``movies``;
  ``postgres://ratings_warehouse/ml_`` reads ``ml_ratings`` and ``ml_movies``; a prefix may start
  with a schema: ``analytics.``).

Every problem with the data, or a source that cannot name data (unknown connection, missing
table), raises DataValidationError, which the DAG treats as not worth a retry.
"""

from __future__ import annotations

import re

from include.recommender.schema import DataValidationError, MovieLensData

POSTGRES_SCHEME = "postgres://"
S3_SCHEME = "s3://"
# Airflow connection ids: letters, digits and "_", "-", "." (no ":" or "@", so a database URL
# pasted by mistake is caught with a clear message).
_CONN_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


def load_training_data(source: str) -> MovieLensData:
    """Load validated MovieLens data from a file, S3 or PostgreSQL source string.

    :param source: "synthetic[:...]", a directory, "s3://bucket/prefix" or
        "postgres://<conn_id>[/<table_prefix>]".
    """
    if isinstance(source, str):
        source = source.strip()
        if source.startswith(POSTGRES_SCHEME):
            return _load_postgres(source)
        if source.startswith(S3_SCHEME):
            from include.recommender.s3_source import load_movielens_s3

            return load_movielens_s3(source)
    from include.recommender.loading import load_movielens

    return load_movielens(source)


def parse_postgres_source(source: str) -> tuple[str, str]:
    """Return (conn_id, table_prefix) of a "postgres://<conn_id>[/<table_prefix>]" source.

    :param source: the source string.
    """
    from include.recommender.warehouse import table_names

    conn_id, _, prefix = source[len(POSTGRES_SCHEME) :].partition("/")
    if not _CONN_ID.match(conn_id):
        raise DataValidationError(
            f"{source}: expected postgres://<Airflow connection id>[/<table prefix>], and "
            f"{conn_id!r} is not a connection id (database URLs belong in the connection itself)"
        )
    try:
        table_names(prefix)
    except DataValidationError as exc:
        raise DataValidationError(f"{source}: bad table prefix {prefix!r}: {exc}") from None
    return conn_id, prefix


def _load_postgres(source: str) -> MovieLensData:
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    from include.recommender.warehouse import read_movielens

    conn_id, prefix = parse_postgres_source(source)
    try:
        conn = PostgresHook(postgres_conn_id=conn_id).get_conn()
    except AirflowNotFoundException as exc:
        raise DataValidationError(f"{source}: no Airflow connection {conn_id!r}") from exc
    try:
        return read_movielens(conn, prefix=prefix, source=source)
    finally:
        conn.close()
