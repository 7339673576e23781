"""Unit-test fixtures: a ledger URL for each back end (SQLite file, the session's PostgreSQL)."""

from __future__ import annotations

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
