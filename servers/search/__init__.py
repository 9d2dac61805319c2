"""The search capability server: per-tenant vector collections with hybrid (vector + BM25) search."""
