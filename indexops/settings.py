"""Typed configuration: one nested model per concern, loaded the way Prefect loads its settings.

Every field is read, highest first, from explicit overrides (CLI flags), the environment (the name
is its path: `store.url` is `INDEXOPS_STORE__URL`), a user YAML overlay, `configs/default.yaml`
(generated from these models by `indexops.config_file`) and the model default.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict,
                               SettingsError, YamlConfigSettingsSource)

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
    device: str = Field("cpu", description="torch device (cpu, cuda, cuda:1); off the CPU, backend auto means torch")
    normalize: bool = Field(True, description="L2-normalise vectors, so the cosine is a dot product")
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
    k1: float = Field(1.2, ge=0, description="BM25 term-frequency saturation")
    b: float = Field(0.75, ge=0, le=1, description="BM25 length normalisation: 0 ignores chunk length, 1 divides by it fully")
    avg_len: float = Field(256.0, gt=0, description="expected average chunk length in tokens")
    language: str = Field("english", description="stemmer and stop words of the Qdrant BM25 analyser")


class DedupeSettings(_Strict):
    exact: bool = Field(True, description="documents with the same normalised text keep one copy, the smallest id (order-independent)")
    near: bool = Field(True, description="near-duplicates (MinHash LSH over word shingles, checked against the whole index) keep the copy indexed first")
    near_threshold: float = Field(0.85, gt=0, le=1, description="estimated Jaccard of word shingles")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations: more estimate the Jaccard closer, cost more")
    shingle_words: int = Field(3, ge=1, description="words per shingle")


class ValidationSettings(_Strict):
    max_bad_fraction: float = Field(0.05, ge=0, le=1, description="above this share a whole batch is rejected")
    max_text_chars: int = Field(2_000_000, gt=0, description="a record with a longer text is quarantined")
    suite: Path = Field(
        Path("expectations/feed_record.json"), validate_default=True,
        description="Great Expectations suite every feed record is checked against; a relative path is under configs/",
    )
    engine: Literal["auto", "great_expectations", "native"] = Field(
        "auto", description="who evaluates the GE suite: auto = the native evaluator when it implements every expectation, else GE"
    )

    @field_validator("suite")
    @classmethod
    def _under_configs(cls, v: Path) -> Path:
        return v if v.is_absolute() else (CONFIG_DIR / v).resolve()


class StoreSettings(_Strict):
    backend: Literal["edge", "qdrant"] = Field(
        "edge", description="edge: Qdrant Edge in-process, files in the workspace; qdrant: a server or cluster at url"
    )
    url: str | None = Field(None, description="Qdrant server URL, or ':memory:' / a path for qdrant-client local mode")
    api_key_env: str | None = Field(None, description="name of the environment variable holding the Qdrant API key (the key never enters the settings)")
    collection_prefix: str = Field("indexops", description="collections are named <prefix>-<recipe hash>")
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
    url: str | None = Field(None, description="SQLAlchemy URL; default sqlite:///<workspace>/ledger.db; postgresql+psycopg://... works the same")


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


_CREDENTIAL_OPTIONS = ("key", "secret", "token", "password", "credential", "sas", "connection_string", "account_key")


def _credential_options(options: Any, path: str = "") -> list[str]:
    """The paths of options that look like credentials, at any depth (`client_kwargs.aws_secret_access_key`),
    and of URLs carrying a password (`endpoint_url: http://user:pw@minio`)."""
    out: list[str] = []
    if isinstance(options, dict):
        for k, val in options.items():
            p = f"{path}.{k}" if path else str(k)
            if any(w in str(k).lower() for w in _CREDENTIAL_OPTIONS):
                out.append(p)
            else:
                out += _credential_options(val, p)
    elif isinstance(options, (list, tuple)):
        for i, val in enumerate(options):
            out += _credential_options(val, f"{path}[{i}]")
    elif isinstance(options, str) and "://" in options and url_has_password(options):
        out.append(path)
    return out


class DocumentSourceSettings(_Strict):
    """The `documents` source kind: a tree of Markdown, HTML, text, PDF and Word files."""

    suffixes: list[str] = Field(
        [".md", ".markdown", ".html", ".htm", ".txt", ".pdf", ".docx"], description="files of a document tree that are read (others are not listed)"
    )
    max_file_bytes: int = Field(50_000_000, gt=0, description="a larger document is quarantined unread")


class SqlSourceSettings(_Strict):
    """The `sql` source kind: rows of a table (or query) as documents."""

    table: str | None = Field(None, description="table to read (schema.table allowed); or give `query`")
    query: str | None = Field(None, description="a SELECT to read instead of a table (used as a subquery)")
    id_column: str = Field("id", description="the column whose value is the document id")
    watermark_column: str | None = Field(
        "updated_at", description="rows at or after the stored watermark are read; null: every run reads every row"
    )
    soft_delete_column: str | None = Field(None, description="a row where this column is true (or set) is deleted from the index")
    title_column: str | None = Field("title", description="the document title (null: none)")
    text_column: str = Field("text", description="the document text")
    metadata_columns: list[str] = Field([], description="columns copied into the document's metadata")
    password_env: str | None = Field(
        None, description="name of the environment variable holding the database password (never in the URL: Prefect "
        "keeps a run's parameters); PostgreSQL also reads PGPASSWORD and ~/.pgpass"
    )
    password_block: str | None = Field(
        None, description="name of a Prefect Secret block holding the database password, read by the flows at run time "
        "(instead of password_env)"
    )
    reconcile_every_runs: int = Field(
        1, ge=1, description="every N-th run also lists every id, so rows deleted from the table (hard deletes) leave the index"
    )

    @model_validator(mode="after")
    def _one_password_source(self) -> "SqlSourceSettings":
        if self.password_env and self.password_block:
            raise ValueError("set one of sql.password_env and sql.password_block, not both")
        return self


class SourceSettings(_Strict):
    """Where documents come from besides local batch files: object storage, document trees, tables."""

    max_delete_fraction: float = Field(
        0.5, ge=0, le=1, description="a listing that would delete more than this share of a source's indexed keys fails "
        "the run instead (an emptied bucket or a wrong prefix must not empty the index)"
    )
    storage_options: dict[str, Any] = Field(
        {}, description="fsspec options for remote feeds (e.g. {endpoint_url: ...}); credentials come from the environment "
        "(AWS_ACCESS_KEY_ID, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*) or credentials_block, never from here"
    )
    credentials_block: str | None = Field(
        None, description="a Prefect block the flows read a remote source's credentials from, as `<type>/<name>`: "
        "aws-credentials/<name> (prefect-aws AwsCredentials: keys, profile or assumed role, region, endpoint), "
        "minio-credentials/<name> (any S3-compatible store) or "
        "secret/<name> (a Secret whose value is a JSON object of fsspec options, for any store); null: the environment"
    )

    @field_validator("storage_options")
    @classmethod
    def _no_credentials(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = _credential_options(v)
        if bad:
            raise ValueError(f"source.storage_options must not hold credentials ({', '.join(sorted(bad))}): set them in the "
                             "environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ...) or a Prefect block")
        return v

    @field_validator("credentials_block")
    @classmethod
    def _block_slug(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[a-z0-9][a-z0-9-]*/[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError(f"source.credentials_block {v!r} is not `<block type>/<block name>` (aws-credentials/exports, secret/kb-bucket)")
        return v


class RunnerSettings(_Strict):
    """Where embedding fans out: in the flow process, or through a Prefect task runner on a cluster."""

    kind: Literal["sequential", "dask"] = Field(
        "sequential", description="sequential: embed in the flow process; dask: fan out through prefect-dask"
    )
    address: str | None = Field(None, description="an existing Dask scheduler (tcp://scheduler:8786); null starts a local cluster")
    n_workers: int = Field(2, gt=0, description="workers of a local Dask cluster")
    threads_per_worker: int = Field(1, gt=0, description="threads of each local Dask worker")
    embed_batch: int = Field(256, gt=0, description="texts per fanned-out embedding task")


class RetrievalSettings(_Strict):
    default: Literal["bm25", "sparse", "dense", "hybrid"] = Field(
        "hybrid", description="bm25: rank-bm25 reference; sparse: Qdrant BM25; dense; hybrid: both fused by Qdrant RRF"
    )
    rrf_k: int = Field(
        20, gt=0, description="RRF constant: score = sum of weight / (k + rank); 20 won on SciFact train "
        "(bench/tune_fusion.py: 0.7251 nDCG@10 against 0.7211 at 60)"
    )
    prefetch: int = Field(200, gt=0, description="chunks each arm of the hybrid fetches before fusion")
    dense_weight: float = Field(1.0, gt=0, description="weight of the dense arm in the fusion")
    sparse_weight: float = Field(1.0, gt=0, description="weight of the sparse arm in the fusion")
    chunk_fanout: int = Field(3, ge=1, description="chunks fetched per wanted document before max-aggregation")


class EvalSettings(_Strict):
    metrics: list[str] = Field(
        default_factory=lambda: ["ndcg@10", "recall@10", "recall@100", "mrr@10", "precision@10", "hit_rate@10", "map"],
        description="metrics an eval reports (name@k)",
    )
    retrievers: list[Literal["bm25", "sparse", "dense", "hybrid"]] = Field(
        default_factory=lambda: ["hybrid"], description="retrievers an eval runs, each scored on every metric"
    )
    floor_metric: str = Field("recall@100", description="the metric the floor applies to")
    floor: float = Field(
        0.8, ge=0, le=1, description="an eval whose floor metric is below this fails (if recall is low, fix retrieval "
        "before touching the generator)"
    )


class RegressionSettings(_Strict):
    metrics: list[str] = Field(
        default_factory=lambda: ["ndcg@10", "recall@100"], description="metrics compared per query against the baseline"
    )
    warn_drop: float = Field(0.01, ge=0, description="mean drop that warns")
    fail_drop: float = Field(0.03, ge=0, description="mean drop that fails when the CI excludes zero")
    alpha: float = Field(0.05, gt=0, lt=1, description="the paired bootstrap's confidence interval is 1 - alpha")
    resamples: int = Field(10_000, ge=100, description="bootstrap resamples of the per-query differences")
    lost_k: int = Field(10, gt=0, description="top-k in which lost relevant documents are listed")
    seed: int = Field(0, description="bootstrap random seed, so a verdict reproduces")


class DriftSettings(_Strict):
    alpha: float = Field(0.01, gt=0, lt=1, description="a two-sample drift test with p below this alerts")
    warn_alpha: float = Field(0.05, gt=0, lt=1, description="a two-sample drift test with p below this warns")
    permutations: int = Field(500, ge=19, description="permutations per two-sample test")
    bootstrap: int = Field(2000, ge=100, description="bootstrap resamples for the retrieval confidence intervals")
    seed: int = Field(0, description="random seed of samples, permutations and bootstraps, so a report reproduces")
    max_sample: int = Field(300, ge=10, description="documents, chunks or queries drawn per side of a test")
    baseline: Literal["pinned", "first"] = Field(
        "pinned", description="corpus baseline: the pinned eval's snapshot (else the first), or the first snapshot; --since overrides"
    )
    retrieval_metrics: list[str] = Field(
        default_factory=lambda: ["recall@10", "recall@100", "ndcg@10", "mrr@10"],
        description="metrics compared between the baseline's and the live snapshot's retrieval",
    )
    regressions_shown: int = Field(25, ge=0, description="rows of the per-query regressions table")
    quarantine_warn: float = Field(0.05, ge=0, le=1, description="quarantined share of received records that warns")
    quarantine_alert: float = Field(0.2, ge=0, le=1, description="quarantined share of received records that alerts")
    duplicate_warn: float = Field(0.2, ge=0, le=1, description="exact+near duplicate share of received records that warns")
    duplicate_alert: float = Field(0.5, ge=0, le=1, description="exact+near duplicate share of received records that alerts")
    deleted_warn: float = Field(0.1, ge=0, le=1, description="share of the baseline's documents deleted since that warns")
    deleted_alert: float = Field(0.3, ge=0, le=1, description="share of the baseline's documents deleted since that alerts")
    oov_warn: float = Field(0.25, ge=0, le=1, description="out-of-vocabulary share that warns when also significant against document splits")
    oov_alert: float = Field(0.5, ge=0, le=1, description="out-of-vocabulary share that alerts when also significant")
    top_terms: int = Field(10, ge=0, description="rising and falling terms listed")
    term_smoothing: float = Field(0.5, gt=0, description="pseudo-count of the term log-ratios")
    freshness_warn_hours: float = Field(36.0, gt=0, description="hours since a feed's last successful ingest that warn")
    freshness_alert_hours: float = Field(72.0, gt=0, description="hours since a feed's last successful ingest that alert")
    query_log: Path | None = Field(None, description="JSONL of production queries: {\"query\": ..., \"timestamp\": ...}")
    labeled_queries: Path | None = Field(None, description="labeled queries file; default: the latest eval's query set")
    query_window_days: float = Field(7.0, gt=0, description="recent = the log's last N days (or since --since)")
    coverage_threshold: float = Field(0.5, ge=-1, le=1, description="cosine to the nearest labeled query under which a query is not covered")
    coverage_warn: float = Field(0.1, ge=0, le=1, description="uncovered share that warns")
    coverage_alert: float = Field(0.25, ge=0, le=1, description="uncovered share that alerts")
    redact: bool = Field(True, description="replace e-mails, phone numbers, IBANs, card numbers and IPs before text reaches a report")


class Settings(BaseSettings):
    """Every setting of an index, its readers and its reports; see the module docstring for the sources."""

    model_config = SettingsConfigDict(
        env_prefix="INDEXOPS_", env_nested_delimiter="__", env_ignore_empty=True, env_parse_none_str="null",
        extra="forbid",
    )

    chunking: ChunkingSettings = Field(ChunkingSettings(), description="how documents are cut into chunks")
    embedding: EmbeddingSettings = Field(EmbeddingSettings(), description="the dense encoder and how it runs")
    bm25: Bm25Settings = Field(Bm25Settings(), description="the sparse BM25 encoder (part of the recipe)")
    dedupe: DedupeSettings = Field(DedupeSettings(), description="exact and near-duplicate detection at ingest")
    validation: ValidationSettings = Field(ValidationSettings(), description="record checks before anything is written")
    store: StoreSettings = Field(StoreSettings(), description="where the vectors live")
    serving: ServingSettings = Field(
        ServingSettings(), description="readers open published snapshots, never the writer's shard (README \"Reading while ingesting\")"
    )
    ledger: LedgerSettings = Field(LedgerSettings(), description="the SQL ledger of documents, chunks, runs and snapshots")
    ingest: IngestSettings = Field(IngestSettings(), description="batching and limits of an ingest run")
    source: SourceSettings = Field(SourceSettings(), description="object storage and keyed sources: what every source shares")
    documents: DocumentSourceSettings = Field(DocumentSourceSettings(), description="the `documents` source kind")
    sql: SqlSourceSettings = Field(SqlSourceSettings(), description="the `sql` source kind (the URL is the --feed)")
    runner: RunnerSettings = Field(RunnerSettings(), description="where embedding fans out")
    retrieval: RetrievalSettings = Field(RetrievalSettings(), description="how queries are answered")
    eval: EvalSettings = Field(EvalSettings(), description="what an eval measures and the floor it must clear")
    regression: RegressionSettings = Field(RegressionSettings(), description="the nightly paired comparison to the baseline")
    drift: DriftSettings = Field(DriftSettings(), description="indexops report / flows/drift_report.py")

    def dump_without_credentials(self) -> dict[str, Any]:
        """The settings as JSON data with any password in `ledger.url` / `store.url` masked: what
        the ledger records as a collection's settings (credentials stay in the environment)."""
        data = self.model_dump(mode="json")
        for group in ("ledger", "store"):
            if data[group].get("url"):
                data[group]["url"] = mask_url_password(data[group]["url"])
        return data

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # earlier wins, nested dicts merge key by key; no .env or secrets dir (secrets stay in env or Prefect blocks)
        yamls = [YamlConfigSettingsSource(settings_cls, yaml_file=f) for f in reversed(_YAML_FILES.get())]
        return (init_settings, _Environment(settings_cls), *yamls)


# The YAML files under the environment, lowest first; `load_settings` adds the user's overlay for one call.
_YAML_FILES: ContextVar[tuple[Path, ...]] = ContextVar("indexops_yaml_files", default=(DEFAULT_CONFIG,))


class _Environment(EnvSettingsSource):
    """The environment, refusing a name with one underscore where the path has two (`INDEXOPS_STORE_URL`, the
    names before the settings were derived from their path): ignoring it would silently run a worker on the
    wrong store."""

    def __call__(self) -> dict[str, Any]:
        for name, value in os.environ.items():
            rest = name.upper().removeprefix("INDEXOPS_").lower()
            if not value or rest == name.lower() or "__" in rest:
                continue
            for group, field in Settings.model_fields.items():
                key = rest.removeprefix(group + "_")
                if key != rest and key in field.annotation.model_fields:  # type: ignore[union-attr]
                    raise SettingsError(f"environment variable {name} is not read: set INDEXOPS_{group.upper()}__{key.upper()}")
                if rest == group and not value.lstrip().startswith("{"):
                    raise SettingsError(f"environment variable {name} is not read: set INDEXOPS_{group.upper()}__<FIELD>")
        return super().__call__()


def load_settings(path: str | Path | None = None, overrides: dict | None = None) -> Settings:
    """Load the settings: overrides > environment > the overlay at `path` > configs/default.yaml > defaults.

    Args:
        path: optional YAML overlay (only the keys it sets change).
        overrides: nested dict applied last (CLI flags).

    Returns:
        The validated settings.

    Raises:
        FileNotFoundError: the overlay file does not exist.
        pydantic.ValidationError: a value is out of range or a key is unknown.
        pydantic_settings.SettingsError: an environment variable cannot be read (or has a pre-path name).
    """
    files = (DEFAULT_CONFIG,)
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"config file not found: {p}")
        files += (p,)
    token = _YAML_FILES.set(files)
    try:
        return Settings(**(overrides or {}))
    finally:
        _YAML_FILES.reset(token)


# userinfo as SQLAlchemy reads it (a password runs to the first "@", "#", "/" and "?" included);
# other URLs end it at "/"; and credentials passed as query parameters (password=, pwd=, ODBC's PWD=)
_SQL_USERINFO = re.compile(r"^(?P<head>(?:postgres|postgresql|sqlite|mysql|mariadb|mssql|oracle)(?:\+[\w]+)?://[^:/@]*:)(?P<pw>[^@]*)@", re.I)
_USERINFO = re.compile(r"^(?P<head>[\w+.-]+://[^:/@]*:)(?P<pw>[^@/]*)@")
_QUERY_SECRET = re.compile(r"(?i)(?P<head>(?:[?&;]|%3B|%26)\s*(?:password|passwd|pwd|secret|token|api_key|access_key)\s*(?:=|%3D))(?P<pw>[^&;#]*?)(?=[&;#]|%3B|%26|$)")


def url_has_password(url: str) -> bool:
    """A URL carrying a password: in its userinfo (`user:secret@`) or as a query parameter
    (`?password=`, ODBC's `PWD=` inside `odbc_connect`)."""
    return bool(_SQL_USERINFO.match(url) or _USERINFO.match(url) or _QUERY_SECRET.search(url))


def mask_url_password(url: str) -> str:
    """`scheme://user:secret@host/db?password=x` -> `scheme://user:***@host/db?password=***`; other URLs unchanged."""
    for pat in (_SQL_USERINFO, _USERINFO):
        if pat.match(url):
            url = pat.sub(lambda m: f"{m.group('head')}***@", url, count=1)
            break
    return _QUERY_SECRET.sub(lambda m: f"{m.group('head')}***", url)
