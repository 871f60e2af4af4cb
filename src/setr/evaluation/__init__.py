"""Metrics, evaluation loops and submission formats."""
