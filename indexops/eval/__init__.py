"""Evaluation: query sets, retrievers, metrics, paired regression, the gate, BEIR benchmarks and summaries."""
