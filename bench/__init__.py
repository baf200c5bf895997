"""Benchmarks for django-webhooks (not tests): run ``python bench/run.py``."""
