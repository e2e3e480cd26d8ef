"""Settings for the test suite: a Redis broker for the live-worker tests, eager by default."""

import os
import tempfile
from pathlib import Path

from core.broker import broker_transport
from core.redis_urls import tls_options

from .base import *  # noqa: F403
from .base import EMBEDDED_DATABASE_URL, INSTALLED_APPS, database, env, redis_url

# A test run does not depend on the caller's shell: an exported DATABASE_URL or CELERY_BROKER_URL
# (as "Running workers" in the README has people do) changes nothing here. The database is
# TEST_DATABASE_URL (the README's PostgreSQL run sets it), else SQLite. The processes that the
# tests start themselves (workers, manage.py) are told TEST_DATABASE_NAME, and their broker, queue
# and mode in the CELERY_ variables, by the tests.
STARTED_BY_TESTS = "TEST_DATABASE_NAME" in os.environ
DATABASES = {"default": database(env("TEST_DATABASE_URL", default=EMBEDDED_DATABASE_URL))}
# A test database of this run's own, as its queues are: two runs on one server never collide.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so that the worker can open it too.
    test_file = Path(tempfile.gettempdir()) / f"importers-test-{os.getpid()}.sqlite3"
    DATABASES["default"]["TEST"] = {"NAME": str(test_file)}
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_importers_{os.getpid()}"}
if STARTED_BY_TESTS:
    DATABASES["default"]["NAME"] = os.environ["TEST_DATABASE_NAME"]

# Importers the tests dispatch; discovered at app loading like any installed app's.
INSTALLED_APPS = [*INSTALLED_APPS, "tests.example_app"]

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Tests run eagerly unless a test starts a real worker (see tests/conftest.py), which
# consumes a queue of its own so that two test runs on one Redis never share messages.
# The Redis the tests use (broker, results, budgets), under names of this run's own: two checkouts,
# or a developer's other work, can share one server by giving each a database of its own here.
TEST_REDIS_URL = env("TEST_REDIS_URL", default="redis://127.0.0.1:6379/14")
CELERY_BROKER_URL = TEST_REDIS_URL
CELERY_RESULT_BACKEND = TEST_REDIS_URL
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_DEFAULT_QUEUE = f"test-{os.getpid()}"
if STARTED_BY_TESTS:
    CELERY_BROKER_URL = redis_url(env("CELERY_BROKER_URL", default=CELERY_BROKER_URL))
    CELERY_RESULT_BACKEND = redis_url(env("CELERY_RESULT_BACKEND", default=CELERY_RESULT_BACKEND))
    CELERY_BROKER_USE_SSL = tls_options(CELERY_BROKER_URL)
    # A test worker sets this to False, or it would run the next task of a chain itself.
    CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=True)
    CELERY_TASK_DEFAULT_QUEUE = env("CELERY_TASK_DEFAULT_QUEUE", default=CELERY_TASK_DEFAULT_QUEUE)
else:
    # Celery reads these two from the environment before any setting: forget the shell's, in
    # this process and in the ones it starts (which are given their own).
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        os.environ.pop(name, None)
CELERY_BROKER_TRANSPORT = broker_transport(CELERY_BROKER_URL)
CELERY_TASK_IGNORE_RESULT = False
WIKIDATA_QUEUE = f"{CELERY_TASK_DEFAULT_QUEUE}-wikidata"
# The request budget: in memory unless a test gives workers a Redis one, under keys of their own.
WIKIDATA_LIMITER_URL = ""
if STARTED_BY_TESTS and CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    WIKIDATA_LIMITER_URL = redis_url(env("WIKIDATA_LIMITER_URL", default="")) or CELERY_BROKER_URL
WIKIDATA_LIMITER_KEY = env("WIKIDATA_LIMITER_KEY", default=f"{CELERY_TASK_DEFAULT_QUEUE}-budget")

# Retries without the production waits, so that fault tests run in a blink.
WIKIDATA_MAX_RETRIES = 3
WIKIDATA_BACKOFF_FACTOR = 0.01
WIKIDATA_BACKOFF_MAX = 0.05
WIKIDATA_TIMEOUT = 2.0
# What the tests' expected labels are in, whatever a developer's .env says.
WIKIDATA_LANGUAGE = "en"
