"""Settings for the benchmarks: the local settings plus the ``bench`` app and its no-op importer."""

from config.settings.local import *  # noqa: F403
from config.settings.local import INSTALLED_APPS, env

# The bench app's ``importers`` module (the no-op importer) is discovered like any installed app's.
INSTALLED_APPS = [*INSTALLED_APPS, "bench"]

# base.py does not read these two from the environment; the benchmarks set them to queues of their own.
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_TASK_DEFAULT_QUEUE", default="celery")
BENCH_NOOP_QUEUE = env("BENCH_NOOP_QUEUE", default="bench-noop")
