"""`az://` as a source, against Azurite (Microsoft's Azure Storage emulator) on loopback, driven
through adlfs: a document tree and a delta feed from a container, with the incremental behaviour of
the S3 tests (a second run fetches no blob, a rewritten blob is fetched again, a deleted one leaves
the index); Azurite checks shared-key signatures, so a wrong key fails the run (and is not shown),
and a Prefect Secret block of fsspec options is a way in with nothing in the environment. Blob GETs
are counted from Azurite's access log."""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone

import pytest

from indexops.ingest.driver import IngestFailed, ingest_path
from tests.conftest import AZURITE_KEY, REPO
from tests.run_traces import assert_secret_left_nowhere, cli_ingest
from tests.unit._helpers import assert_store_matches_ledger, doc_ids_in_store, settings_for

pytestmark = pytest.mark.integration

SMALL = {"chunking": {"strategy": "recursive", "max_tokens": 16, "overlap_tokens": 0, "include_title": False}}


def _container(connection_string: str):
    import adlfs

    fs = adlfs.AzureBlobFileSystem(connection_string=connection_string)
    name = f"kb-{uuid.uuid4().hex[:10]}"
    fs.mkdir(name)
    return fs, name


def _texts(ctx) -> set[str]:
    return {v["text"] for _, v in ctx.store.iter_points(["text"])}


def test_a_document_tree_in_a_container_is_read_incrementally(azurite, make_ctx):
    fs, c = _container(azurite.connection_string)
    fs.pipe({f"{c}/handbook/install.md": b"# Install\n\n## Linux\n\nUse the package manager.",
             f"{c}/handbook/faq/billing.html": b"<title>Billing</title><h2>Invoices</h2><p>Sent monthly.</p>",
             f"{c}/handbook/notes.csv": b"id,text\n1,not a document\n"})
    ctx = make_ctx(settings_for(SMALL))
    summary = ingest_path(ctx, f"az://{c}/handbook", "documents")
    assert doc_ids_in_store(ctx) == {"install.md", "faq/billing.html"}
    assert sorted(azurite.blob_gets(c)) == ["handbook/faq/billing.html", "handbook/install.md"]
    assert summary["keys"]["listed"] == 2
    sections = {v["text"]: v["metadata"].get("section") for _, v in ctx.store.iter_points(["text", "metadata"])}
    assert sections == {"Use the package manager.": "Linux", "Sent monthly.": "Invoices"}

    gets = len(azurite.blob_gets(c))
    ingest_path(ctx, f"az://{c}/handbook", "documents")
    assert azurite.blob_gets(c)[gets:] == []  # a no-op lists and reads no blob

    fs.pipe(f"{c}/handbook/install.md", b"# Install\n\n## Linux\n\nUse the distribution's package manager.")
    fs.rm(f"{c}/handbook/faq/billing.html")
    ingest_path(ctx, f"az://{c}/handbook", "documents")
    assert azurite.blob_gets(c)[gets:] == ["handbook/install.md"]
    assert doc_ids_in_store(ctx) == {"install.md"}
    assert _texts(ctx) == {"Use the distribution's package manager."}
    assert_store_matches_ledger(ctx)


def test_a_delta_feed_in_a_container_applies_each_file_once(azurite, make_ctx):
    fs, c = _container(azurite.connection_string)
    rows = [{"id": f"d{i}", "title": f"Doc {i}", "text": f"Body of document {i}."} for i in range(3)]
    fs.pipe(f"{c}/feed/000001.jsonl", "\n".join(json.dumps(r) for r in rows).encode())
    ctx = make_ctx(settings_for())
    ingest_path(ctx, f"az://{c}/feed", "delta")
    assert doc_ids_in_store(ctx) == {"d0", "d1", "d2"}
    gets = len(azurite.blob_gets(c))
    ingest_path(ctx, f"az://{c}/feed", "delta")
    assert azurite.blob_gets(c)[gets:] == []
    fs.pipe(f"{c}/feed/000002.jsonl", json.dumps({"id": "d1", "op": "delete"}).encode())
    ingest_path(ctx, f"az://{c}/feed", "delta")
    assert azurite.blob_gets(c)[gets:] == ["feed/000002.jsonl"]
    assert doc_ids_in_store(ctx) == {"d0", "d2"}
    assert_store_matches_ledger(ctx)


def test_a_wrong_account_key_fails_the_run_without_showing_a_key(azurite, make_ctx, monkeypatch):
    """Also: the key is read from the environment each run (fsspec's instance cache would keep the
    first filesystem, and the key it was made with, for the life of the process): a run with the
    right key comes first, in this process."""
    fs, c = _container(azurite.connection_string)
    fs.pipe(f"{c}/handbook/a.md", b"# A\n\nA page.")
    ingest_path(make_ctx(settings_for()), f"az://{c}/handbook", "documents")
    wrong = "V3Jvbmcta2V5LWZvci1henVyaXRlLXRlc3RzLTAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA="
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string.replace(AZURITE_KEY, wrong))
    ctx = make_ctx(settings_for())
    with pytest.raises(IngestFailed) as e:
        ingest_path(ctx, f"az://{c}/handbook", "documents")
    assert "AuthorizationFailure" in str(e.value), str(e.value)  # Azurite refused the signature: the key is checked
    assert wrong not in str(e.value) and AZURITE_KEY not in str(e.value)
    assert ctx.store.count() == 0


@pytest.mark.e2e
def test_a_secret_block_of_fsspec_options_is_the_only_credential(azurite_server, prefect_server, tmp_path):
    """The CLI with no Azure variable in its environment: `source.credentials_block: secret/<name>`
    holding `{"connection_string": ...}` lands the container; the key is in no output, workspace
    file, parameter, log or artifact."""
    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_URL, temporary_settings

    fs, c = _container(azurite_server.connection_string)
    fs.pipe({f"{c}/kb/a.md": b"# Alpha\n\nThe alpha document.", f"{c}/kb/b.txt": b"The beta note."})
    block = f"kb-azure-{uuid.uuid4().hex[:8]}"
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        Secret(value={"connection_string": azurite_server.connection_string}).save(block)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    env["PREFECT_API_URL"] = prefect_server
    (tmp_path / "block.yaml").write_text((REPO / "configs" / "hashing.yaml").read_text() + f"source: {{credentials_block: secret/{block}}}\n")
    started = datetime.now(timezone.utc)
    p = cli_ingest(f"az://{c}/kb", "documents", tmp_path / "ws", tmp_path / "block.yaml", env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "listed 2, fetched 2" in p.stdout
    texts = assert_secret_left_nowhere(AZURITE_KEY, p, tmp_path / "ws", started, prefect_server)
    assert f"source credentials from Prefect block secret/{block}" in texts["logs"]
