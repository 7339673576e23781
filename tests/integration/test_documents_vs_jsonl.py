"""SciFact ingested as JSONL and as a tree of Markdown files (title as heading, abstract as body)
retrieves the same: nDCG@10 within 0.01 for every retriever, on a slice of the train queries with
the hashing embedder (the whole corpus with the real model: bench/documents_vs_jsonl.py, figures
in bench/README.md)."""

from __future__ import annotations

import pytest

from bench.documents_vs_jsonl import compare
from tests.conftest import REPO, SHARED, skip_without_shared

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_markdown_tree_retrieves_as_the_jsonl_corpus(tmp_path):
    data = SHARED / "data" / "scifact"
    if not data.is_dir():
        skip_without_shared(str(data))
    res = compare(data, str(REPO / "configs" / "hashing.yaml"), limit=150, workspace=tmp_path, max_queries=120)
    assert res["documents"] > 150 and res["queries"] == 120
    for name, both in res["retrievers"].items():
        assert abs(both["documents"]["ndcg@10"] - both["jsonl"]["ndcg@10"]) <= 0.01, (name, both)
        assert both["jsonl"]["ndcg@10"] > 0.1, (name, both)  # a real retrieval, not two empty runs
