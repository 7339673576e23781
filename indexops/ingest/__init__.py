"""Ingestion: sources of change, validation, dedupe, chunking, the batch stages and the run driver."""
