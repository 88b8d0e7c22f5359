"""Ratings and movies from an s3:// prefix, against an S3 server over HTTP (moto)."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from include.recommender.loading import load_movielens
from include.recommender.schema import DataValidationError
from include.recommender.snapshot import fingerprint
from mlflow_governance.data_sources import load_training_data

pytestmark = pytest.mark.services

BUCKET = "datasets"
SOURCE = "synthetic:n_users=40,n_movies=120,n_ratings=1500,seed=4"


@pytest.fixture(scope="module")
def dataset_bucket(s3_server):
    """A bucket of MovieLens layouts: good CSV, good Parquet, and broken ones."""
    s3 = s3_server.client()
    s3.create_bucket(Bucket=BUCKET)
    data = load_movielens(SOURCE)

    def put(key: str, frame: pd.DataFrame, kind: str = "csv") -> None:
        buffer = io.BytesIO()
        if kind == "csv":
            frame.to_csv(buffer, index=False)
        else:
            frame.to_parquet(buffer, index=False)
        s3.put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())

    put("movielens/small/ratings.csv", data.ratings)
    put("movielens/small/movies.csv", data.movies)
    put("movielens/small/archive/ratings.csv", data.ratings.head(3))  # deeper "folder": ignored
    put("parquet/ratings.parquet", data.ratings, "parquet")
    put("parquet/movies.parquet", data.movies, "parquet")
    put("no-movies/ratings.csv", data.ratings)
    bad = data.ratings.copy()
    bad.loc[5, "rating"] = 6.5
    put("out-of-range/ratings.csv", bad)
    put("out-of-range/movies.csv", data.movies)
    put("missing-column/ratings.csv", data.ratings.drop(columns=["timestamp"]))
    put("missing-column/movies.csv", data.movies)
    return data


@pytest.fixture
def s3_environment(s3_server, monkeypatch):
    """Credentials and endpoint as a worker gets them from its environment."""
    for key, value in s3_server.environment.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("prefix", ["movielens/small", "movielens/small/", "parquet"])
def test_an_s3_prefix_reads_like_the_same_files_on_disk(dataset_bucket, s3_environment, prefix):
    data = load_training_data(f"s3://{BUCKET}/{prefix}")
    assert data.source == f"s3://{BUCKET}/{prefix.rstrip('/')}"
    assert fingerprint(data.ratings) == fingerprint(dataset_bucket.ratings)
    pd.testing.assert_frame_equal(data.ratings, dataset_bucket.ratings)
    pd.testing.assert_frame_equal(data.movies, dataset_bucket.movies)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (f"s3://{BUCKET}/no-movies", rf"s3://{BUCKET}/no-movies/movies.csv: missing object \(nor movies.parquet\)"),
        (f"s3://{BUCKET}/nothing-here", rf"s3://{BUCKET}/nothing-here/ratings.csv: missing object"),
        (f"s3://{BUCKET}/out-of-range", rf"s3://{BUCKET}/out-of-range/ratings.csv: 1 rating\(s\) outside 0.5..5.0, e.g. 6.5 \(data row 6\)"),
        (f"s3://{BUCKET}/missing-column", rf"s3://{BUCKET}/missing-column/ratings.csv: missing column\(s\) 'timestamp'"),
        ("s3://no-such-bucket/x", "s3://no-such-bucket/x: no such bucket 'no-such-bucket'"),
        ("s3:///x", "no bucket name"),
    ],
)
def test_bad_s3_sources_name_the_object_and_the_problem(dataset_bucket, s3_environment, uri, message):
    with pytest.raises(DataValidationError, match=message):
        load_training_data(uri)
