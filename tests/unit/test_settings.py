"""Typed settings (indexops/settings.py): defaults, overlays, overrides, env and validation."""

from __future__ import annotations

import pydantic
import pytest

from indexops.settings import CONFIG_DIR, Settings, load_settings
from tests.conftest import REPO


def test_defaults_from_default_yaml(monkeypatch):
    monkeypatch.delenv("INDEXOPS_EMBEDDING_MODEL", raising=False)
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
    monkeypatch.setenv("INDEXOPS_EMBEDDING_MODEL", "hashing")
    assert load_settings().embedding.model == "hashing"
    assert load_settings(overrides={"embedding": {"model": "other"}}).embedding.model == "other"  # flags beat env


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
