"""The Celery application, configured from Django's settings (``CELERY_`` namespace)."""

import os

from celery import Celery

from config.env_file import read_env_file

read_env_file()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
