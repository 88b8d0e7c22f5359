"""Load MovieLens ratings and movies from an S3 prefix (AWS, MinIO or any S3-compatible store).

``s3://bucket/path/`` holds ratings.csv|ratings.parquet and movies.csv|movies.parquet, laid out
like a local MovieLens directory. The objects are downloaded to a temporary directory and read
by the file loader, so both sources apply exactly the same checks; errors name the S3 object.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

from include.recommender.loading import load_movielens
from include.recommender.schema import DataValidationError, MovieLensData

SCHEME = "s3://"
_TABLES = ("ratings", "movies")
_SUFFIXES = ("csv", "parquet")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Return (bucket, key prefix ending in "/" or empty) of an s3:// URI.

    :param uri: e.g. "s3://datasets/movielens/ml-latest-small".
    """
    if not isinstance(uri, str) or not uri.startswith(SCHEME):
        raise DataValidationError(f"{uri!r}: not an s3:// URI")
    bucket, _, prefix = uri[len(SCHEME) :].partition("/")
    if not bucket:
        raise DataValidationError(f"{uri}: no bucket name (expected s3://bucket/prefix)")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def s3_client(endpoint_url: str | None = None) -> Any:
    """Return a boto3 S3 client; credentials come from boto3's usual chain (env, files, roles).

    :param endpoint_url: an S3-compatible endpoint such as MinIO; default MLFLOW_S3_ENDPOINT_URL,
        else boto3's own setting (AWS_ENDPOINT_URL_S3) or AWS.
    """
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url or os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None)


def load_movielens_s3(uri: str, *, client: Any = None) -> MovieLensData:
    """Download and validate the MovieLens files under an s3:// prefix.

    :param uri: "s3://bucket/prefix" holding ratings and movies files.
    :param client: a boto3 S3 client (default: s3_client()).
    """
    from botocore.exceptions import ClientError

    bucket, prefix = parse_s3_uri(uri)
    base = f"{SCHEME}{bucket}/{prefix}".rstrip("/")
    client = client or s3_client()
    try:
        keys = _keys_at(client, bucket, prefix)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
            raise DataValidationError(f"{base}: no such bucket {bucket!r}") from exc
        raise
    wanted = [f"{prefix}{table}.{suffix}" for table in _TABLES for suffix in _SUFFIXES]
    for table in _TABLES:
        if not any(f"{prefix}{table}.{suffix}" in keys for suffix in _SUFFIXES):
            raise DataValidationError(f"{base}/{table}.csv: missing object (nor {table}.parquet)")
    with tempfile.TemporaryDirectory(prefix="movielens-s3-") as directory:
        for key in (key for key in wanted if key in keys):
            client.download_file(bucket, key, str(Path(directory) / key[len(prefix) :]))
        try:
            data = load_movielens(directory)
        except DataValidationError as exc:
            # The file loader names the temporary copy; name the object the user knows instead.
            message = str(exc).replace(str(Path(directory).resolve()), base).replace(directory, base)
            raise DataValidationError(message) from exc
    return dataclasses.replace(data, source=base)


def _keys_at(client: Any, bucket: str, prefix: str) -> set[str]:
    """The object keys directly under prefix (not in deeper "folders")."""
    keys: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys
