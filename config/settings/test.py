"""Settings for the test suite: a Redis broker for the live-worker tests, eager by default."""

import os
import tempfile
from pathlib import Path

from .base import *  # noqa: F403
from .base import DATABASES, INSTALLED_APPS, env

# The live-worker tests run a worker process against this run's test database.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so that the worker can open it too.
    test_file = Path(tempfile.gettempdir()) / f"importers-test-{os.getpid()}.sqlite3"
    DATABASES["default"]["TEST"] = {"NAME": str(test_file)}
if "TEST_DATABASE_NAME" in os.environ:  # set for the worker by tests/conftest.py
    DATABASES["default"]["NAME"] = os.environ["TEST_DATABASE_NAME"]

# Importers the tests dispatch; discovered at app loading like any installed app's.
INSTALLED_APPS = [*INSTALLED_APPS, "tests.example_app"]

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Tests run eagerly unless a test starts a real worker (see tests/conftest.py), which
# consumes a queue of its own so that two test runs on one Redis never share messages.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/14")
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default="redis://127.0.0.1:6379/15")
CELERY_TASK_IGNORE_RESULT = False
# The test worker process sets this to False, or it would run the next task of a chain itself.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=True)
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_TASK_DEFAULT_QUEUE", default=f"test-{os.getpid()}")
WIKIDATA_QUEUE = f"{CELERY_TASK_DEFAULT_QUEUE}-wikidata"

# Retries without the production waits, so that fault tests run in a blink.
WIKIDATA_MAX_RETRIES = 3
WIKIDATA_BACKOFF_FACTOR = 0.01
WIKIDATA_BACKOFF_MAX = 0.05
WIKIDATA_TIMEOUT = 2.0
