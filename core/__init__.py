"""Importer classes whose methods run as Celery tasks."""
