"""indexops: keep a RAG retrieval index fresh, versioned and measured.

The package holds the pure logic and the adapters (ledger, vector stores, embedders).
It never imports Prefect: `tasks/` and `flows/` wrap it.
"""

__version__ = "0.1.0"
