"""The index: its context and recipe, snapshots, read replicas and readers, promotion, reconciliation."""
