"""Benchmarks of the importers and their Celery tasks: run ``python -m bench``."""
