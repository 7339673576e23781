"""Where a feed lives: plain paths and file:// URLs are local, other fsspec URLs remote, database
URLs are tables; names default from the URL; a missing fsspec implementation names its extra."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from indexops.ingest.driver import ingest_path
from indexops.ingest.sources import detect_kind, feed_name
from indexops.ingest.storage import RemoteDir, has_password, is_remote, is_sql_url, local_path, merge_storage_options, url_scheme
from indexops.settings import load_settings, mask_url_password
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


@pytest.mark.parametrize("options", [
    {"key": "AKIA..."},
    {"client_kwargs": {"aws_secret_access_key": "x"}},  # nested
    {"endpoint_url": "http://minio:pw@minio:9000"},  # a URL with userinfo
])
def test_storage_options_refuse_credentials(options):
    with pytest.raises(ValueError, match="must not hold credentials"):
        load_settings(overrides={"source": {"storage_options": options}})


def test_storage_options_without_credentials_are_kept():
    ok = {"endpoint_url": "http://minio:9000", "client_kwargs": {"region_name": "eu-west-1"}}
    assert load_settings(overrides={"source": {"storage_options": ok}}).source.storage_options == ok


def test_a_blocks_options_go_over_the_configs_and_nested_ones_merge_key_by_key():
    config = {"endpoint_url": "http://minio:9000", "client_kwargs": {"verify": "/etc/ca.pem", "region_name": "us-east-1"},
              "config_kwargs": {"s3": {"addressing_style": "path"}}}
    block = {"key": "k", "secret": "s", "client_kwargs": {"region_name": "eu-west-1"}}
    assert merge_storage_options(config, block) == {
        "endpoint_url": "http://minio:9000", "key": "k", "secret": "s",
        "client_kwargs": {"verify": "/etc/ca.pem", "region_name": "eu-west-1"}, "config_kwargs": {"s3": {"addressing_style": "path"}}}
    assert merge_storage_options(config, {}) == config and merge_storage_options({}, block) == block


@pytest.mark.parametrize("url,masked", [
    ("postgresql+psycopg://app:s3cr#t/x?@db/crm", "postgresql+psycopg://app:***@db/crm"),  # SQLAlchemy reads to the first @
    ("postgresql+psycopg://app@db/crm?sslmode=require&password=hunter2", "postgresql+psycopg://app@db/crm?sslmode=require&password=***"),
    ("postgresql+psycopg:///crm?host=db&password=pw&x=1", "postgresql+psycopg:///crm?host=db&password=***&x=1"),
    ("mssql+pyodbc:///?odbc_connect=DRIVER%3D%7BX%7D%3BPWD%3Dtopsecret%3BUID%3Dsa", "mssql+pyodbc:///?odbc_connect=DRIVER%3D%7BX%7D%3BPWD%3D***%3BUID%3Dsa"),
    ("http://minio:pw@minio:9000", "http://minio:***@minio:9000"),
])
def test_passwords_in_urls_are_found_and_masked_however_they_are_written(url, masked):
    assert has_password(url) and mask_url_password(url) == masked


@pytest.mark.parametrize("url", ["postgresql+psycopg://app@db/crm", "s3://bucket/a@b/c", "http://host:8080/x", "sqlite:////tmp/a.db"])
def test_urls_without_a_password_are_left_alone(url):
    assert not has_password(url) and mask_url_password(url) == url


def test_a_file_url_with_a_host_is_refused(make_ctx):
    with pytest.raises(ValueError, match="absolute path"):
        local_path("file://handbook")
    assert local_path("file:///data/my%20kb") == Path("/data/my kb")


def test_a_tree_whose_subfolder_cannot_be_listed_fails_instead_of_deleting_it(make_ctx, tmp_path, monkeypatch):
    from indexops.ingest.driver import IngestFailed

    for d in ("kb/open", "kb/locked"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "page.md").write_text(f"# {d}\n\nA page in {d}.", encoding="utf-8")
    ctx = make_ctx()
    ingest_path(ctx, tmp_path / "kb", "documents")
    real = os.scandir
    monkeypatch.setattr(os, "scandir", lambda p=".": (_ for _ in ()).throw(PermissionError(13, "Permission denied", str(p)))
                        if str(p).endswith("locked") else real(p))
    with pytest.raises(IngestFailed, match="cannot list"):
        ingest_path(ctx, tmp_path / "kb", "documents")
    assert doc_ids_in_store(ctx) == {"open/page.md", "locked/page.md"}
