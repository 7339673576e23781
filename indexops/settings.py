"""Typed configuration: one nested model per concern, loaded from YAML and validated at the edge."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChunkingSettings(_Strict):
    strategy: Literal["token_window", "recursive", "document"] = Field(
        "recursive", description="token_window: fixed windows; recursive: paragraph/sentence aware; "
        "document: one chunk per document (the model reads its first max_tokens)"
    )
    max_tokens: int = Field(256, gt=8, description="chunk size in the embedding model's tokens")
    overlap_tokens: int = Field(32, ge=0, description="tokens shared by consecutive windows")
    include_title: bool = Field(True, description="prefix the document title to every chunk")

    @field_validator("overlap_tokens")
    @classmethod
    def _overlap_below_size(cls, v: int, info: Any) -> int:
        size = info.data.get("max_tokens", 256)
        if v >= size:
            raise ValueError(f"overlap_tokens ({v}) must be smaller than max_tokens ({size})")
        return v


class EmbeddingSettings(_Strict):
    model: str = Field(
        "all-MiniLM-L6-v2",
        description="'hashing' for the deterministic test embedder, else a sentence-transformers name or path",
    )
    batch_size: int | None = Field(None, gt=0, description="texts per forward pass; unset = the backend's measured best")
    dim: int = Field(384, gt=0, description="vector size of the hashing embedder (real models report their own)")
    device: str = "cpu"
    normalize: bool = True
    workers: int | None = Field(
        None, ge=0, description="encoder processes, one thread each share of the cores; unset = one per core, 0/1 = in-process"
    )
    pool_min_texts: int = Field(
        256, ge=1, description="fewer texts are encoded in-process, unless the workers already run (their start-up costs seconds)"
    )
    backend: Literal["auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-bf16"] = Field(
        "auto",
        description="auto: on CPU openvino-bf16 where the CPU does bf16 natively (AMX, AVX512-BF16), else onnx-int8; "
        "torch on a GPU; torch: sentence-transformers float32; onnx-int8 / onnx: "
        "ONNX Runtime on CPU; openvino-bf16 / openvino: OpenVINO on CPU (bf16 / f32; exported once, cached)",
    )


class Bm25Settings(_Strict):
    k1: float = Field(1.2, ge=0)
    b: float = Field(0.75, ge=0, le=1)
    avg_len: float = Field(256.0, gt=0, description="expected average chunk length in tokens")
    language: str = "english"


class DedupeSettings(_Strict):
    exact: bool = True
    near: bool = True
    near_threshold: float = Field(0.85, gt=0, le=1, description="estimated Jaccard of word shingles")
    num_perm: int = Field(128, ge=16, le=1024)
    shingle_words: int = Field(3, ge=1)


class ValidationSettings(_Strict):
    max_bad_fraction: float = Field(0.05, ge=0, le=1, description="above this share a whole batch is rejected")
    max_text_chars: int = Field(2_000_000, gt=0)
    suite: Path = Field(CONFIG_DIR / "expectations" / "feed_record.json")
    engine: Literal["auto", "great_expectations", "native"] = Field(
        "auto", description="who evaluates the GE suite: auto = the native evaluator when it implements every expectation, else GE"
    )


class StoreSettings(_Strict):
    backend: Literal["edge", "qdrant"] = "edge"
    url: str | None = Field(None, description="Qdrant server URL, or ':memory:' / a path for qdrant-client local mode")
    api_key_env: str | None = Field(None, description="environment variable holding the Qdrant API key")
    collection_prefix: str = "indexops"
    shards: int | None = Field(None, gt=0, description="shard_number for new collections on a Qdrant cluster")
    replication_factor: int | None = Field(None, gt=0, description="replicas per shard on a Qdrant cluster")
    memory: Literal["cold", "cached"] = Field(
        "cold", description="Qdrant Edge placement for new collections: cold maps everything from disk and reads what is "
        "touched (opening costs the same at 10k or 1M points); cached reads vectors into memory on open and keeps the "
        "sparse index in RAM (faster first queries for a long-lived searcher)"
    )


class ServingSettings(_Strict):
    """How readers (a RAG app, `indexops search`, the evaluate, regression and drift flows) see the index."""

    retention: int = Field(
        3, ge=1, description="published snapshots kept per collection for readers and pins (Qdrant Edge); a snapshot a "
        "reader holds open, and one `live` is pinned to, stay besides"
    )
    share_files: bool = Field(
        True, description="a published snapshot hard-links the bulk files it shares with the previous one (publishing "
        "costs what changed); false copies the whole shard every time"
    )
    verify_links: bool = Field(False, description="compare each hard-linked file with the writer's bytes when publishing (tests)")
    check_every_s: float = Field(
        0.0, ge=0, description="how often an open reader looks for a newer published snapshot (0: before every search; "
        "one stat of a file) and for a moved live alias (at least every 2 s)"
    )


class LedgerSettings(_Strict):
    url: str | None = Field(None, description="SQLAlchemy URL; default sqlite:///<workspace>/ledger.db")


class IngestSettings(_Strict):
    batch_docs: int = Field(500, gt=0, description="documents per unit of work for snapshot and BEIR sources")
    upsert_batch: int = Field(256, gt=0, description="points per store write")
    quarantine_spike_fraction: float = Field(
        0.02, ge=0, le=1, description="a run quarantining more than this share of records emits a quarantine-spike event"
    )
    concurrency_limit: str | None = Field(
        "indexops-ingest", description="Prefect global concurrency limit every ingest occupies (created by `make deploy`)"
    )
    optimize_after_points: int | None = Field(
        50_000, gt=0, description="a run that wrote at least this many points merges the Qdrant Edge segments before it "
        "ends (unmerged segments make every later open read them all); null: only the maintenance flow does"
    )
    compact_store_every_points: int | None = Field(
        25_000, gt=0, description="Qdrant Edge keeps the segment a run appends to in memory: once this many points went "
        "in, the run indexes that segment into an on-disk one between batches (shards made before this setting: closes "
        "and reopens the shard), so a long load's memory stays flat; null: never"
    )


class RunnerSettings(_Strict):
    """Where embedding fans out: in the flow process, or through a Prefect task runner on a cluster."""

    kind: Literal["sequential", "dask"] = "sequential"
    address: str | None = Field(None, description="an existing Dask scheduler (tcp://scheduler:8786); None starts a local cluster")
    n_workers: int = Field(2, gt=0, description="workers of a local Dask cluster")
    threads_per_worker: int = Field(1, gt=0)
    embed_batch: int = Field(256, gt=0, description="texts per fanned-out embedding task")


class RetrievalSettings(_Strict):
    default: Literal["bm25", "sparse", "dense", "hybrid"] = "hybrid"
    rrf_k: int = Field(20, gt=0, description="RRF constant: score = sum of weight / (k + rank)")
    prefetch: int = Field(200, gt=0, description="chunks each arm of the hybrid fetches before fusion")
    dense_weight: float = Field(1.0, gt=0)
    sparse_weight: float = Field(1.0, gt=0)
    chunk_fanout: int = Field(3, ge=1, description="chunks fetched per wanted document before max-aggregation")


class EvalSettings(_Strict):
    metrics: list[str] = Field(
        default_factory=lambda: ["ndcg@10", "recall@10", "recall@100", "mrr@10", "precision@10", "hit_rate@10", "map"]
    )
    retrievers: list[Literal["bm25", "sparse", "dense", "hybrid"]] = Field(default_factory=lambda: ["hybrid"])
    floor_metric: str = Field("recall@100", description="the metric the floor applies to")
    floor: float = Field(0.8, ge=0, le=1, description="an eval whose floor metric is below this fails")


class RegressionSettings(_Strict):
    metrics: list[str] = Field(default_factory=lambda: ["ndcg@10", "recall@100"])
    warn_drop: float = Field(0.01, ge=0, description="mean drop that warns")
    fail_drop: float = Field(0.03, ge=0, description="mean drop that fails when the CI excludes zero")
    alpha: float = Field(0.05, gt=0, lt=1)
    resamples: int = Field(10_000, ge=100)
    lost_k: int = Field(10, gt=0, description="top-k in which lost relevant documents are listed")
    seed: int = 0


class DriftSettings(_Strict):
    alpha: float = Field(0.01, gt=0, lt=1, description="a two-sample drift test with p below this alerts")
    warn_alpha: float = Field(0.05, gt=0, lt=1, description="a two-sample drift test with p below this warns")
    permutations: int = Field(500, ge=19, description="permutations per two-sample test")
    bootstrap: int = Field(2000, ge=100, description="bootstrap resamples for the retrieval confidence intervals")
    seed: int = 0
    max_sample: int = Field(300, ge=10, description="documents, chunks or queries drawn per side of a test")
    baseline: Literal["pinned", "first"] = Field(
        "pinned", description="corpus baseline: the pinned eval's snapshot (else the first), or the first snapshot; --since overrides"
    )
    retrieval_metrics: list[str] = Field(default_factory=lambda: ["recall@10", "recall@100", "ndcg@10", "mrr@10"])
    regressions_shown: int = Field(25, ge=0, description="rows of the per-query regressions table")
    quarantine_warn: float = Field(0.05, ge=0, le=1, description="quarantined share of received records that warns")
    quarantine_alert: float = Field(0.2, ge=0, le=1)
    duplicate_warn: float = Field(0.2, ge=0, le=1, description="exact+near duplicate share of received records that warns")
    duplicate_alert: float = Field(0.5, ge=0, le=1)
    deleted_warn: float = Field(0.1, ge=0, le=1, description="share of the baseline's documents deleted since that warns")
    deleted_alert: float = Field(0.3, ge=0, le=1)
    oov_warn: float = Field(0.25, ge=0, le=1, description="out-of-vocabulary share that warns when also significant against document splits")
    oov_alert: float = Field(0.5, ge=0, le=1)
    top_terms: int = Field(10, ge=0, description="rising and falling terms listed")
    term_smoothing: float = Field(0.5, gt=0, description="pseudo-count of the term log-ratios")
    freshness_warn_hours: float = Field(36.0, gt=0, description="hours since a feed's last successful ingest that warn")
    freshness_alert_hours: float = Field(72.0, gt=0)
    query_log: Path | None = Field(None, description="JSONL of production queries: {\"query\": ..., \"timestamp\": ...}")
    labeled_queries: Path | None = Field(None, description="labeled queries file; default: the latest eval's query set")
    query_window_days: float = Field(7.0, gt=0, description="recent = the log's last N days (or since --since)")
    coverage_threshold: float = Field(0.5, ge=-1, le=1, description="cosine to the nearest labeled query under which a query is not covered")
    coverage_warn: float = Field(0.1, ge=0, le=1, description="uncovered share that warns")
    coverage_alert: float = Field(0.25, ge=0, le=1)
    redact: bool = Field(True, description="replace e-mails, phone numbers, IBANs, card numbers and IPs before text reaches a report")


class Settings(_Strict):
    chunking: ChunkingSettings = ChunkingSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    bm25: Bm25Settings = Bm25Settings()
    dedupe: DedupeSettings = DedupeSettings()
    validation: ValidationSettings = ValidationSettings()
    store: StoreSettings = StoreSettings()
    serving: ServingSettings = ServingSettings()
    ledger: LedgerSettings = LedgerSettings()
    ingest: IngestSettings = IngestSettings()
    runner: RunnerSettings = RunnerSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    eval: EvalSettings = EvalSettings()
    regression: RegressionSettings = RegressionSettings()
    drift: DriftSettings = DriftSettings()


_ENV_OVERRIDES = {
    "INDEXOPS_EMBEDDING_MODEL": ("embedding", "model"),
    "INDEXOPS_STORE_BACKEND": ("store", "backend"),
    "INDEXOPS_STORE_URL": ("store", "url"),
    "INDEXOPS_LEDGER_URL": ("ledger", "url"),
    "INDEXOPS_RUNNER": ("runner", "kind"),
    "INDEXOPS_RUNNER_ADDRESS": ("runner", "address"),
}


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_settings(path: str | Path | None = None, overrides: dict | None = None) -> Settings:
    """Load the default YAML, overlay a user file and explicit overrides, validate.

    Args:
        path: optional YAML overlay (only the keys it sets change).
        overrides: nested dict applied last (CLI flags).

    Returns:
        The validated settings.

    Raises:
        FileNotFoundError: the overlay file does not exist.
        pydantic.ValidationError: a value is out of range or a key is unknown.
    """
    data: dict = {}
    if DEFAULT_CONFIG.exists():
        data = yaml.safe_load(DEFAULT_CONFIG.read_text()) or {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"config file not found: {p}")
        data = _deep_merge(data, yaml.safe_load(p.read_text()) or {})
    for var, path in _ENV_OVERRIDES.items():  # deployment-time settings (containers, workers)
        if os.environ.get(var):
            section, key = path
            data = _deep_merge(data, {section: {key: os.environ[var]}})
    if overrides:
        data = _deep_merge(data, overrides)
    settings = Settings.model_validate(data)
    if not settings.validation.suite.is_absolute():
        settings.validation.suite = (CONFIG_DIR / settings.validation.suite).resolve()
    return settings
