"""indexops: keep a RAG retrieval index fresh, versioned and measured.

The package holds the pure logic and the adapters (ledger, vector stores, embedders).
It never imports Prefect: `tasks/` and `flows/` wrap it.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`indexops.Index` (the reader API) without importing the engine on `import indexops`."""
    if name == "Index":
        from indexops.index.reader import Index

        return Index
    raise AttributeError(name)
