"""Samples for the next-line reranker (the reranker_data stage)."""
