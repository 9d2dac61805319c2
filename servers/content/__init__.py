"""Semantic containers and the ingest pipeline (see server.py)."""
