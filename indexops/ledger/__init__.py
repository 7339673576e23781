"""The ledger: what the index holds per document and chunk, and the runs, snapshots and evals around it."""

from indexops.ledger.facade import Ledger
from indexops.ledger.index_lock import LedgerBusy
from indexops.ledger.rows import AppliedFile, BatchCommit, ChunkRow, DocRow, DocWrite, KeyChanges, multiset_term
from indexops.ledger.schema import (
    SCHEMA_VERSION, applied_files, doc_counts, documents, locks, metadata, query_sets, utcnow,
)

__all__ = [
    "SCHEMA_VERSION", "AppliedFile", "BatchCommit", "ChunkRow", "DocRow", "DocWrite", "KeyChanges", "Ledger", "LedgerBusy", "multiset_term",
    "applied_files", "doc_counts", "documents", "locks", "metadata", "query_sets", "utcnow",
]
