"""Vector stores: the protocol, Qdrant Edge in-process, a Qdrant server, the BM25 sparse encoder."""
