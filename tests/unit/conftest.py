"""Unit-test fixtures: a ledger URL for each back end (SQLite file, the session's PostgreSQL), and a
private model-export cache for the encoder tests."""

from __future__ import annotations

import os

import pytest


def _reset_pg(url: str) -> None:
    """The PostgreSQL database is shared by the session: start every test from empty tables."""
    from sqlalchemy import create_engine

    from indexops.ledger import metadata

    engine = create_engine(url)
    try:
        metadata.drop_all(engine)
        metadata.create_all(engine)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request, tmp_path):
    """A ledger URL on each back end; PostgreSQL tables are dropped and recreated first."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger-param.db'}"
    url = request.getfixturevalue("postgres_url")
    _reset_pg(url)
    return url


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    """A module's own `INDEXOPS_CACHE_DIR` (exports, quantised and compiled models), offline hub."""
    d = tmp_path_factory.mktemp("model-cache")
    old = {k: os.environ.get(k) for k in ("INDEXOPS_CACHE_DIR", "HF_HUB_OFFLINE")}
    os.environ["INDEXOPS_CACHE_DIR"] = str(d)
    os.environ["HF_HUB_OFFLINE"] = "1"
    yield d
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
