"""Synthetic ratings cache: hits, misses, corrupted or foreign files, atomic writes, the loader."""

from __future__ import annotations

import logging
import os

import pandas as pd
import pytest

from include.recommender import synthetic, synthetic_cache
from include.recommender.loading import load_movielens
from include.recommender.snapshot import fingerprint
from include.recommender.synthetic_cache import cache_directory, cache_path, full_spec, load_or_generate

SPEC = {"n_users": 40, "n_movies": 300, "n_ratings": 2_000, "seed": 5}


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    directory = tmp_path / "cache"
    monkeypatch.setenv(synthetic_cache.CACHE_ENV, str(directory))
    return directory


@pytest.fixture
def draws(monkeypatch):
    """Count how often the ratings are actually drawn (the expensive step the cache skips)."""
    calls = []
    real = synthetic._draw_ratings

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "_draw_ratings", counting)
    return calls


def _assert_same_data(first, second):
    pd.testing.assert_frame_equal(first.ratings, second.ratings)
    pd.testing.assert_frame_equal(first.movies, second.movies)
    assert first.source == second.source
    assert fingerprint(first.ratings) == fingerprint(second.ratings)


def test_a_hit_returns_identical_frames_without_drawing_again(cache_dir, draws):
    first = load_or_generate(**SPEC)
    assert len(draws) == 1 and list(cache_dir.glob("*.parquet")) == [cache_path(cache_dir, full_spec(**SPEC))]
    second = load_or_generate(**SPEC)
    assert len(draws) == 1
    _assert_same_data(first, second)
    _assert_same_data(second, synthetic.generate_movielens(**SPEC))
    # The oracle is rebuilt around the cached ratings.
    users, movies = second.ratings["userId"].to_numpy(), second.ratings["movieId"].to_numpy()
    assert (second.oracle.expected_rating(users, movies) == first.oracle.expected_rating(users, movies)).all()


def test_a_different_spec_misses(cache_dir, draws):
    load_or_generate(**SPEC)
    other = load_or_generate(**{**SPEC, "seed": 6})
    assert len(draws) == 2
    assert len(list(cache_dir.glob("*.parquet"))) == 2
    assert fingerprint(other.ratings) != fingerprint(load_or_generate(**SPEC).ratings)


def test_defaults_given_explicitly_hit_the_same_file(cache_dir):
    assert full_spec(**SPEC) == full_spec(**SPEC, start="2024-01-01")
    assert cache_path(cache_dir, full_spec(**SPEC)) != cache_path(cache_dir, full_spec(**SPEC, end="2025-06-30"))


def test_a_new_generator_version_misses(cache_dir, monkeypatch):
    before = cache_path(cache_dir, full_spec(**SPEC))
    monkeypatch.setattr(synthetic_cache, "GENERATOR_VERSION", "test-next")
    assert cache_path(cache_dir, full_spec(**SPEC)) != before


def test_a_corrupted_file_is_drawn_again_and_replaced(cache_dir, draws, caplog):
    expected = load_or_generate(**SPEC)
    path = cache_path(cache_dir, full_spec(**SPEC))
    path.write_bytes(path.read_bytes()[:200])  # a truncated write from some other tool
    with caplog.at_level(logging.WARNING, logger=synthetic_cache.__name__):
        again = load_or_generate(**SPEC)
    assert len(draws) == 2
    assert "unreadable" in caplog.text and str(path) in caplog.text
    _assert_same_data(expected, again)
    load_or_generate(**SPEC)
    assert len(draws) == 2  # the file was repaired


def test_a_file_holding_another_spec_is_not_trusted(cache_dir, draws, caplog):
    load_or_generate(**SPEC)
    other_spec = {**SPEC, "seed": 9}
    other_path = cache_path(cache_dir, full_spec(**other_spec))
    os.replace(cache_path(cache_dir, full_spec(**SPEC)), other_path)
    with caplog.at_level(logging.WARNING, logger=synthetic_cache.__name__):
        data = load_or_generate(**other_spec)
    assert "was written for spec" in caplog.text
    _assert_same_data(data, synthetic.generate_movielens(**other_spec))


def test_writes_leave_no_temporary_files(cache_dir):
    load_or_generate(**SPEC)
    load_or_generate(**{**SPEC, "seed": 6})
    assert sorted(p.suffix for p in cache_dir.iterdir()) == [".parquet", ".parquet"]


def test_an_unwritable_cache_still_returns_the_data(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv(synthetic_cache.CACHE_ENV, str(blocker / "cache"))
    with caplog.at_level(logging.WARNING, logger=synthetic_cache.__name__):
        data = load_or_generate(**SPEC)
    assert "could not write synthetic cache" in caplog.text
    _assert_same_data(data, synthetic.generate_movielens(**SPEC))


def test_the_cache_can_be_switched_off(tmp_path, monkeypatch, draws):
    monkeypatch.setenv(synthetic_cache.CACHE_ENV, "off")
    monkeypatch.chdir(tmp_path)
    assert cache_directory() is None
    load_or_generate(**SPEC)
    load_or_generate(**SPEC)
    assert len(draws) == 2


def test_default_directory_is_under_airflow_home(tmp_path, monkeypatch):
    monkeypatch.delenv(synthetic_cache.CACHE_ENV, raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert cache_directory() == tmp_path / "data-cache"


def test_unknown_parameters_are_named():
    with pytest.raises(ValueError, match="unknown synthetic parameter.*n_moviez"):
        full_spec(n_moviez=3)


def test_the_synthetic_source_loads_through_the_cache(cache_dir, draws):
    source = "synthetic:n_users=40,n_movies=300,n_ratings=2000,seed=5"
    first = load_movielens(source)
    second = load_movielens(source)
    assert len(draws) == 1
    _assert_same_data(first, second)
    assert len(list(cache_dir.glob("*.parquet"))) == 1
