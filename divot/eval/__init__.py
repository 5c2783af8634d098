"""Evaluation: benchmark tasks, metrics and probes (library side)."""
