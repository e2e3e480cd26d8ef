"""WSGI entry point for production servers."""

import os

from django.core.wsgi import get_wsgi_application

from config.env_file import read_env_file

read_env_file()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

application = get_wsgi_application()
