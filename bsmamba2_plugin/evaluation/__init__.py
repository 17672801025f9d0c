"""Evaluation: metrics, the silence suite, chunked inference and `bsmamba2 evaluate`."""
