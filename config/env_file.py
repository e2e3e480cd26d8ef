"""The project's ``.env`` file, read by every entry point before it picks its settings module."""

import os
from pathlib import Path

import environ

# DJANGO_ENV_FILE names another file, e.g. for a second deployment from one checkout.
ENV_FILE = Path(os.environ.get("DJANGO_ENV_FILE", Path(__file__).resolve().parent.parent / ".env"))


def read_env_file() -> None:
    """Put the ``.env`` file's variables in the environment; variables already set there win.

    Called before ``DJANGO_SETTINGS_MODULE`` gets its default, so that the file can choose it.
    """
    environ.Env.read_env(ENV_FILE)
