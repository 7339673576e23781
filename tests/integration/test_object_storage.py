"""Object storage as a source, against a real S3 endpoint on loopback (moto's server mode) driven
through s3fs: a document tree and a delta feed from a bucket; a second run fetches no object; a
rewritten object is fetched again and only its changed chunks are embedded; a deleted object
leaves the index; a listing that would empty the index fails instead; the credentials appear in
no output, ledger row, workspace file, log or artifact. Object GETs are counted from the server's
request log, embedded texts at the embedder."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from datetime import datetime, timezone

import pytest

from indexops.ingest.driver import IngestFailed, ingest_path
from indexops.ingest.keyed import TooManyDeletes
from tests.conftest import REPO, S3_SECRET
from tests.run_traces import INDEXOPS, assert_secret_left_nowhere, cli_ingest
from tests.unit._helpers import assert_store_matches_ledger, doc_ids_in_store, settings_for
from tests.unit.test_embedded_once import CountingEmbedder

pytestmark = pytest.mark.integration

SMALL = {"chunking": {"strategy": "recursive", "max_tokens": 16, "overlap_tokens": 0, "include_title": False}}
INSTALL = """# Install guide

Read this before you start. It covers every platform we support.

## Linux

Use the package manager to install the tool. Then run the setup command once.

## Windows

Download the installer from the releases page. Run it as an administrator.
"""
FAQ = ("<html><head><title>FAQ</title></head><body><nav>Home | Docs | Blog</nav><h1>FAQ</h1>"
       "<h2>Billing</h2><p>Invoices are sent on the first day of each month.</p>"
       "<h2>Support</h2><p>Write to the help desk and expect an answer within a day.</p></body></html>")


def _pdf() -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title("Travel policy")
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.multi_cell(0, 8, "Economy class for flights under six hours. Receipts within thirty days.")
    return bytes(pdf.output())


def _bucket(s3fs_mod):
    fs = s3fs_mod.S3FileSystem()
    name = f"kb-{uuid.uuid4().hex[:10]}"
    fs.mkdir(name)
    return fs, name


def _texts_of(ctx, doc_id: str) -> set[str]:
    return {v["text"] for _, v in ctx.store.iter_points(["doc_id", "text"]) if v["doc_id"] == doc_id}


def test_document_tree_in_a_bucket(s3, make_ctx):
    import s3fs

    fs, bucket = _bucket(s3fs)
    root = f"{bucket}/kb"
    fs.pipe({f"{root}/guides/install.md": INSTALL.encode(), f"{root}/faq.html": FAQ.encode(), f"{root}/policy.pdf": _pdf(),
             f"{root}/notes.txt": b"Office hours are nine to five.", f"{root}/image.png": b"\x89PNG not a document"})
    ctx = make_ctx(settings_for(SMALL))
    ctx.embedder = emb = CountingEmbedder(ctx.embedder)
    url = f"s3://{root}"
    docs = {"guides/install.md", "faq.html", "policy.pdf", "notes.txt"}

    ingest_path(ctx, url, "documents")
    assert doc_ids_in_store(ctx) == docs
    assert sorted(s3.object_gets(bucket)) == sorted(f"kb/{d}" for d in docs)  # the .png is not a document: never read
    sections = {v["metadata"].get("section") for _, v in ctx.store.iter_points(["doc_id", "metadata"]) if v["doc_id"] == "guides/install.md"}
    assert {"Linux", "Windows"} <= sections
    titles = {v["doc_id"]: v["title"] for _, v in ctx.store.iter_points(["doc_id", "title"])}
    assert titles["policy.pdf"] == "Travel policy" and titles["guides/install.md"] == "Install guide" and titles["faq.html"] == "FAQ"

    gets, calls = len(s3.object_gets(bucket)), len(emb.calls)
    ingest_path(ctx, url, "documents")  # nothing changed: listed, nothing fetched, nothing embedded
    assert len(s3.object_gets(bucket)) == gets and len(emb.calls) == calls

    before = _texts_of(ctx, "guides/install.md")
    fs.pipe(f"{root}/guides/install.md", INSTALL.replace("Run it as an administrator.", "Run it with your own account.").encode())
    ingest_path(ctx, url, "documents")
    assert s3.object_gets(bucket)[gets:] == ["kb/guides/install.md"]
    after = _texts_of(ctx, "guides/install.md")
    embedded = set(emb.texts()) - {t for call in emb.calls[:calls] for t in call}
    assert embedded == after - before and 0 < len(embedded) < len(after)  # the Windows section only

    fs.rm(f"{root}/faq.html")
    ingest_path(ctx, url, "documents")
    assert doc_ids_in_store(ctx) == docs - {"faq.html"}
    assert_store_matches_ledger(ctx)

    ids_before = doc_ids_in_store(ctx)
    fs.rm([f"{root}/guides/install.md", f"{root}/policy.pdf"])  # 2 of 3 keys gone: more than max_delete_fraction 0.5
    with pytest.raises(IngestFailed) as err:
        ingest_path(ctx, url, "documents")
    assert isinstance(err.value.__cause__, TooManyDeletes) and "max_delete_fraction" in str(err.value)
    assert doc_ids_in_store(ctx) == ids_before


def test_delta_feed_in_a_bucket(s3, make_ctx):
    import s3fs

    fs, bucket = _bucket(s3fs)
    rows = lambda a, b: "".join(json.dumps({"id": f"d{i}", "text": f"document number {i} about topic {i % 3}"}) + "\n" for i in range(a, b))
    fs.pipe({f"{bucket}/feed/000001.jsonl": rows(0, 5).encode(), f"{bucket}/feed/000002.jsonl": rows(5, 9).encode(),
             f"{bucket}/feed/.000003.jsonl.tmp": b"partial upload"})
    ctx = make_ctx(settings_for())
    out = ingest_path(ctx, f"s3://{bucket}/feed", "delta")
    assert out["feed"] == "feed" and out["files"] == ["000001.jsonl", "000002.jsonl"]
    assert doc_ids_in_store(ctx) == {f"d{i}" for i in range(9)}
    gets = len(s3.object_gets(bucket))
    assert gets == 2

    ingest_path(ctx, f"s3://{bucket}/feed", "delta")
    assert len(s3.object_gets(bucket)) == gets  # applied files listed as applied: not read again

    fs.pipe(f"{bucket}/feed/000003.jsonl", (json.dumps({"id": "d0", "op": "delete"}) + "\n").encode())
    ingest_path(ctx, f"s3://{bucket}/feed", "delta")
    assert s3.object_gets(bucket)[gets:] == ["feed/000003.jsonl"]
    assert "d0" not in doc_ids_in_store(ctx)
    assert_store_matches_ledger(ctx)


@pytest.mark.e2e
def test_cli_from_a_bucket_keeps_credentials_out(s3, prefect_server, tmp_path):
    """`indexops ingest --feed s3://…` in a subprocess against a Prefect server: the secret key is in
    its environment and nowhere else (stdout, stderr, workspace files, flow-run parameters, logs, artifacts)."""
    import s3fs

    fs, bucket = _bucket(s3fs)
    fs.pipe({f"{bucket}/kb/a.md": b"# Alpha\n\nThe alpha document.", f"{bucket}/kb/b.html": b"<title>Beta</title><p>The beta page.</p>"})
    ws = tmp_path / "ws"
    started = datetime.now(timezone.utc)
    env = dict(os.environ, **s3.env, PREFECT_API_URL=prefect_server)
    cmd = [INDEXOPS, "ingest", "--feed", f"s3://{bucket}/kb", "--source", "documents", "--workspace", str(ws),
           "--config", str(REPO / "configs" / "hashing.yaml")]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "listed 2, fetched 2" in p.stdout
    texts = assert_secret_left_nowhere(S3_SECRET, p, ws, started, prefect_server)
    assert any(k.startswith("artifact") and "listed" in v for k, v in texts.items())


@pytest.mark.e2e
def test_credentials_from_a_prefect_block_and_nowhere_else(s3_server, prefect_server, tmp_path):
    """`source.credentials_block` names an AwsCredentials block saved on the Prefect server: the CLI,
    run with no AWS credentials anywhere in its environment, fails without the block and lands the
    bucket with it; the secret key is in no output, workspace file, parameter, log or artifact."""
    import s3fs
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_aws import AwsCredentials

    fs = s3fs.S3FileSystem(key=s3_server.env["AWS_ACCESS_KEY_ID"], secret=S3_SECRET, endpoint_url=s3_server.url)
    bucket = f"kb-{uuid.uuid4().hex[:10]}"
    fs.mkdir(bucket)
    fs.pipe({f"{bucket}/kb/a.md": b"# Alpha\n\nThe alpha document.", f"{bucket}/kb/b.txt": b"The beta note."})
    block = f"kb-reader-{uuid.uuid4().hex[:8]}"
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        AwsCredentials(aws_access_key_id=s3_server.env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=S3_SECRET, region_name="us-east-1",
                       aws_client_parameters={"endpoint_url": s3_server.url}).save(block)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(PREFECT_API_URL=prefect_server, AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_EC2_METADATA_DISABLED="true")
    hashing = (REPO / "configs" / "hashing.yaml").read_text()
    (tmp_path / "env.yaml").write_text(hashing + f"source: {{storage_options: {{endpoint_url: '{s3_server.url}'}}}}\n")
    (tmp_path / "block.yaml").write_text(hashing + f"source: {{credentials_block: aws-credentials/{block}}}\n")

    def ingest(config: str, ws: str) -> subprocess.CompletedProcess:
        return cli_ingest(f"s3://{bucket}/kb", "documents", tmp_path / ws, tmp_path / config, env)

    without = ingest("env.yaml", "ws-env")  # the same bucket and endpoint, credentials left to the environment: there are none
    assert without.returncode != 0 and "credentials" in (without.stdout + without.stderr).lower(), without.stdout + without.stderr
    (tmp_path / "typo.yaml").write_text(hashing + f"source: {{credentials_block: aws-credentials/{block}-typo}}\n")
    typo = ingest("typo.yaml", "ws-typo")
    assert typo.returncode != 0 and f"aws-credentials/{block}-typo' (source.credentials_block) could not be loaded" in typo.stdout + typo.stderr
    started = datetime.now(timezone.utc)
    p = ingest("block.yaml", "ws")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "listed 2, fetched 2" in p.stdout
    texts = assert_secret_left_nowhere(S3_SECRET, p, tmp_path / "ws", started, prefect_server)
    assert f"source credentials from Prefect block aws-credentials/{block}" in texts["logs"]


def test_a_mistyped_prefix_fails_instead_of_listing_nothing(s3, make_ctx):
    import s3fs

    fs, bucket = _bucket(s3fs)
    fs.pipe(f"{bucket}/handbook/a.md", b"# A\n\nA page.")
    ctx = make_ctx(settings_for())
    with pytest.raises(IngestFailed, match="nothing at s3://"):
        ingest_path(ctx, f"s3://{bucket}/handbok", "documents")
    assert ctx.store.count() == 0
