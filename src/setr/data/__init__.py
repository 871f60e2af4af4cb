"""Datasets, class tables and image pipelines."""
