"""Where a feed lives: plain paths and file:// URLs are local, other fsspec URLs remote, database
URLs are tables; names default from the URL; a missing fsspec implementation names its extra."""

from __future__ import annotations

import sys

import pytest

from indexops.ingest.driver import ingest_path
from indexops.ingest.sources import detect_kind, feed_name
from indexops.ingest.storage import RemoteDir, has_password, is_remote, is_sql_url, url_scheme
from indexops.settings import load_settings
from tests.unit._helpers import doc_ids_in_store

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("url,scheme,remote,sql", [
    ("/data/feed", None, False, False),
    ("file:///data/feed", "file", False, False),
    ("s3://bucket/exports/helpcenter", "s3", True, False),
    ("gs://bucket/kb", "gs", True, False),
    ("az://container/kb", "az", True, False),
    ("postgresql+psycopg://app@db/crm", "postgresql", False, True),
    ("sqlite:////tmp/crm.db", "sqlite", False, True),
])
def test_locations_are_told_apart(url, scheme, remote, sql):
    assert (url_scheme(url), is_remote(url), is_sql_url(url)) == (scheme, remote, sql)


def test_default_names_and_kinds_of_urls():
    assert feed_name("s3://exports/daily/helpcenter/") == "helpcenter"
    assert detect_kind("s3://exports/helpcenter") == "delta"
    assert detect_kind("postgresql+psycopg://app@db/crm") == "sql"
    assert has_password("postgresql://app:pw@db/crm") and not has_password("postgresql://app@db/crm")


def test_a_file_url_is_a_local_tree(make_ctx, tmp_path):
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "a.md").write_text("# A\n\nThe first page.", encoding="utf-8")
    ctx = make_ctx()
    ingest_path(ctx, f"file://{tmp_path / 'kb'}", "documents")
    assert doc_ids_in_store(ctx) == {"a.md"}


def test_a_missing_filesystem_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # as where the [gcs] extra is not installed
    with pytest.raises(ImportError, match=r"pip install gcsfs"):
        RemoteDir("gs://bucket/kb")


def test_storage_options_refuse_credentials():
    with pytest.raises(ValueError, match="must not hold credentials"):
        load_settings(overrides={"source": {"storage_options": {"endpoint_url": "http://minio:9000", "secret": "x"}}})
    assert load_settings(overrides={"source": {"storage_options": {"endpoint_url": "http://minio:9000"}}}).source.storage_options
