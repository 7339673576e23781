"""Sources of change: delta feeds (batch files applied once, in name order), full snapshots
diffed against the ledger, and BEIR corpora."""
