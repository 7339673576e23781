"""Typed settings (indexops/settings.py): defaults, overlays, overrides, env, validation, descriptions,
and configs/default.yaml generated from the models (indexops/config_file.py)."""

from __future__ import annotations

import pydantic
import pytest
from pydantic import BaseModel
from pydantic_settings import SettingsError

from indexops.config_file import main as config_file_main
from indexops.config_file import render_defaults
from indexops.settings import CONFIG_DIR, DEFAULT_CONFIG, Settings, load_settings
from tests.conftest import REPO


def test_defaults_from_default_yaml(monkeypatch):
    monkeypatch.delenv("INDEXOPS_EMBEDDING__MODEL", raising=False)
    s = load_settings()
    assert s.chunking.strategy == "recursive" and s.chunking.max_tokens == 256 and s.chunking.overlap_tokens == 32
    assert s.embedding.model == "all-MiniLM-L6-v2"
    assert s.validation.max_bad_fraction == 0.05
    assert s.dedupe.near_threshold == 0.85 and s.dedupe.exact and s.dedupe.near
    assert s.store.backend == "edge" and s.ledger.url is None
    assert s.validation.suite == CONFIG_DIR / "expectations" / "feed_record.json"
    assert s.validation.suite.is_absolute() and s.validation.suite.is_file()


def test_overlay_changes_only_its_keys(hashing_settings):
    assert hashing_settings.embedding.model == "hashing" and hashing_settings.embedding.dim == 64
    assert hashing_settings.embedding.pool_min_texts == 256  # untouched by the overlay (set in default.yaml)
    assert hashing_settings.chunking.max_tokens == 256


def test_overrides_apply_last(tmp_path):
    over = tmp_path / "o.yaml"
    over.write_text("chunking:\n  max_tokens: 100\n  overlap_tokens: 10\n")
    s = load_settings(over, overrides={"chunking": {"overlap_tokens": 5}, "dedupe": {"near": False}})
    assert (s.chunking.max_tokens, s.chunking.overlap_tokens, s.dedupe.near) == (100, 5, False)
    assert s.chunking.strategy == "recursive"


def test_env_names_the_embedding_model(monkeypatch):
    monkeypatch.setenv("INDEXOPS_EMBEDDING__MODEL", "hashing")
    assert load_settings().embedding.model == "hashing"
    assert load_settings(overrides={"embedding": {"model": "other"}}).embedding.model == "other"  # flags beat env


def test_env_name_is_derived_from_the_path_of_any_nested_field(monkeypatch):
    monkeypatch.setenv("INDEXOPS_STORE__URL", "http://qdrant:6333")
    monkeypatch.setenv("INDEXOPS_DRIFT__FRESHNESS_ALERT_HOURS", "48")
    monkeypatch.setenv("INDEXOPS_EVAL__RETRIEVERS", '["bm25", "dense"]')
    monkeypatch.setenv("INDEXOPS_EMBEDDING__BATCH_SIZE", "")  # empty is unset, as before
    s = load_settings()
    assert s.store.url == "http://qdrant:6333" and s.drift.freshness_alert_hours == 48.0
    assert s.eval.retrievers == ["bm25", "dense"] and s.embedding.batch_size is None
    assert s.store.backend == "edge" and s.store.collection_prefix == "indexops"  # the rest of the group stays
    assert s.drift.freshness_warn_hours == 36.0


def test_precedence_override_env_overlay_default(monkeypatch, tmp_path):
    over = tmp_path / "o.yaml"
    over.write_text("ingest:\n  batch_docs: 2\n  upsert_batch: 2\n  quarantine_spike_fraction: 0.2\n")
    monkeypatch.setenv("INDEXOPS_INGEST__BATCH_DOCS", "3")
    monkeypatch.setenv("INDEXOPS_INGEST__UPSERT_BATCH", "3")
    i = load_settings(over, overrides={"ingest": {"batch_docs": 4}}).ingest
    assert (i.batch_docs, i.upsert_batch, i.quarantine_spike_fraction, i.concurrency_limit) == (4, 3, 0.2, "indexops-ingest")
    assert Settings().ingest.batch_docs == 3  # the bare model reads the same sources (no overlay)


def test_old_env_names_are_refused_not_ignored(monkeypatch):
    """The names read before the settings were derived from their path would silently do nothing."""
    monkeypatch.setenv("INDEXOPS_STORE_URL", "http://qdrant:6333")
    with pytest.raises(SettingsError, match="INDEXOPS_STORE_URL is not read: set INDEXOPS_STORE__URL"):
        load_settings()
    monkeypatch.delenv("INDEXOPS_STORE_URL")
    monkeypatch.setenv("INDEXOPS_RUNNER", "dask")
    with pytest.raises(SettingsError, match="INDEXOPS_RUNNER is not read: set INDEXOPS_RUNNER__<FIELD>"):
        load_settings()
    monkeypatch.delenv("INDEXOPS_RUNNER")
    monkeypatch.setenv("INDEXOPS_CACHE_DIR", "/tmp/x")  # an indexops variable that is not a setting
    assert load_settings().store.url is None


@pytest.mark.parametrize("text, key", [("store:\n  urll: http://q\n", "store.urll"), ("stores:\n  url: http://q\n", "stores")])
def test_unknown_yaml_key_is_named(tmp_path, text, key):
    over = tmp_path / "o.yaml"
    over.write_text(text)
    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted") as e:
        load_settings(over)
    assert key in str(e.value)


def _models(model: type[BaseModel]):
    yield model
    for f in model.model_fields.values():
        if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel):
            yield from _models(f.annotation)


def test_every_field_has_a_description():
    missing = [f"{m.__name__}.{n}" for m in _models(Settings) for n, f in m.model_fields.items() if not (f.description or "").strip()]
    assert not missing, f"fields without a description: {missing}"


def test_default_yaml_is_generated_from_the_models():
    assert DEFAULT_CONFIG.read_text() == render_defaults(), "configs/default.yaml is stale: run `make config`"
    assert config_file_main(["--check"]) == 0


def test_default_yaml_holds_every_default_and_reloads_to_the_model():
    assert load_settings() == Settings.model_validate({})
    assert all(f"\n  {n}:" in render_defaults() for m in _models(Settings) if m is not Settings for n in m.model_fields)


def test_config_file_check_fails_on_a_stale_file(tmp_path):
    stale = tmp_path / "default.yaml"
    stale.write_text(render_defaults().replace("max_tokens: 256", "max_tokens: 512"))
    assert config_file_main(["--check", "--path", str(stale)]) == 1
    assert config_file_main(["--path", str(stale)]) == 0 and stale.read_text() == render_defaults()


def test_relative_suite_resolves_under_configs():
    s = load_settings(overrides={"validation": {"suite": "expectations/feed_record.json"}})
    assert s.validation.suite == (CONFIG_DIR / "expectations" / "feed_record.json").resolve()


def test_missing_overlay_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_settings(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"chunking": {"max_tokens": 8}}, "max_tokens"),
        ({"chunking": {"max_tokens": 64, "overlap_tokens": 64}}, "overlap_tokens"),
        ({"chunking": {"strategy": "semantic"}}, "strategy"),
        ({"dedupe": {"near_threshold": 0}}, "near_threshold"),
        ({"dedupe": {"near_threshold": 1.5}}, "near_threshold"),
        ({"dedupe": {"num_perm": 8}}, "num_perm"),
        ({"validation": {"max_bad_fraction": -0.1}}, "max_bad_fraction"),
        ({"validation": {"max_bad_fraction": 1.1}}, "max_bad_fraction"),
        ({"store": {"backend": "pinecone"}}, "backend"),
        ({"bm25": {"b": 2}}, "b"),
        ({"ingest": {"batch_docs": 0}}, "batch_docs"),
        ({"chunking": {"max_tokns": 100}}, "max_tokns"),  # typo: unknown keys are rejected
        ({"nonsense": {}}, "nonsense"),
    ],
)
def test_invalid_values_are_rejected_at_the_edge(overrides, field):
    with pytest.raises(pydantic.ValidationError) as e:
        load_settings(REPO / "configs" / "hashing.yaml", overrides=overrides)
    assert field in str(e.value)


def test_overlap_error_names_both_values():
    with pytest.raises(pydantic.ValidationError, match=r"overlap_tokens \(40\) must be smaller than max_tokens \(40\)"):
        load_settings(overrides={"chunking": {"max_tokens": 40, "overlap_tokens": 40}})


def test_settings_model_has_no_required_fields():
    s = Settings()
    assert s.ingest.upsert_batch == 256 and s.bm25.k1 == 1.2


@pytest.mark.parametrize("overlay", sorted(p.name for p in (REPO / "configs").glob("*.yaml") if p.name != "operations.yaml"))
def test_every_shipped_overlay_validates(overlay):
    """operations.yaml is the deployments file (its own model); every other YAML in configs/ is a
    settings overlay a user passes with --config, so each must load as it is."""
    s = load_settings(REPO / "configs" / overlay)
    assert s.embedding.backend in ("auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-bf16")


def test_the_settings_the_ledger_records_hold_no_password(tmp_path, monkeypatch):
    """A password inside `ledger.url` or `store.url` never reaches the ledger's copy of the settings."""
    import json

    from indexops.index.context import open_index
    from indexops.settings import mask_url_password

    assert mask_url_password("postgresql+psycopg://ops:s3cr3t@db:5432/ix") == "postgresql+psycopg://ops:***@db:5432/ix"
    assert mask_url_password("http://qdrant:6333") == "http://qdrant:6333"
    s = load_settings(REPO / "configs" / "hashing.yaml")
    s.store.url = "http://reader:hunter2-store@qdrant:6333"
    dumped = json.dumps(s.dump_without_credentials())
    assert "hunter2-store" not in dumped and "reader:***@qdrant" in dumped
    ctx = open_index(tmp_path / "ws", s)  # Edge ignores store.url: only the recorded settings carry it
    ctx.close()
    raw = b"".join(p.read_bytes() for p in (tmp_path / "ws").glob("ledger.db*"))
    assert b"hunter2-store" not in raw
    assert b"reader:***@qdrant" in raw  # the settings were recorded: the line above is not vacuous
