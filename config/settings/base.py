"""Settings shared by every environment, read from the environment through django-environ."""

from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

from config.env_file import read_env_file
from core.broker import broker_transport
from core.redis_urls import tls_options, with_tls_policy

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# A .env file in the project root is read when present; real environment variables win.
read_env_file()

# General
# ------------------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="django-insecure-local-only-key")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = True
USE_TZ = True
ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Databases
# ------------------------------------------------------------------------------
# SQLite in the project root is the embedded default: no server to set up.
EMBEDDED_DATABASE_URL = f"sqlite:///{BASE_DIR / 'db.sqlite3'}"


def database(url: str) -> dict[str, Any]:
    """Django's settings of the database at ``url``, with the project's connection policy."""
    settings: dict[str, Any] = env.db_url_config(url)
    settings["ATOMIC_REQUESTS"] = True
    # Keep a connection open between requests and tasks (a new PostgreSQL connection costs
    # ~10 ms), checking that it still works before reuse.
    settings["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    settings["CONN_HEALTH_CHECKS"] = True
    if settings["ENGINE"] == "django.db.backends.postgresql":
        # A server that takes the connection and never answers must not hold a process for ever
        # (libpq waits without limit by default); a URL's own connect_timeout wins.
        settings.setdefault("OPTIONS", {}).setdefault(
            "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=10)
        )
    if settings["ENGINE"] == "django.db.backends.sqlite3":
        # Writers take the lock when a transaction begins, and wait for it rather than fail:
        # the embedded mode has one process, but a test worker shares the file. Past
        # SQLITE_TIMEOUT seconds of waiting, a write fails with "database is locked".
        settings["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": env.float("SQLITE_TIMEOUT", default=20.0),
        }
    return settings


DATABASES = {"default": database(env("DATABASE_URL", default=EMBEDDED_DATABASE_URL))}

# Apps
# ------------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "core",
    "importers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Logging
# ------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", default="WARNING")},
}

# Redis
# ------------------------------------------------------------------------------
# Every Redis URL below goes through redis_url(), the one TLS policy of every Redis client
# (core.redis_urls): a rediss:// URL's own ssl_cert_reqs and ssl_ca_certs win, else these decide.
# Heroku's Key-Value Store requires TLS and serves a self-signed certificate that no CA list can
# verify, and its REDIS_URL carries no options: so the traffic is encrypted but the certificate is
# not verified by default ("none"). Where the server's certificate can be verified, set
# REDIS_SSL_CERT_REQS=required (and REDIS_SSL_CA_CERTS to the CA file, unless the system's trusts it).
REDIS_SSL_CERT_REQS = env("REDIS_SSL_CERT_REQS", default="none")
REDIS_SSL_CA_CERTS = env("REDIS_SSL_CA_CERTS", default="")


def redis_url(url: str) -> str:
    """``url`` with the project's TLS policy explicit, when it is a ``rediss://`` URL."""
    try:
        return with_tls_policy(url, REDIS_SSL_CERT_REQS, REDIS_SSL_CA_CERTS)
    except ValueError as error:
        raise ImproperlyConfigured(str(error)) from None


# Heroku's Key-Value Store sets REDIS_URL.
REDIS_URL = redis_url(env("REDIS_URL", default=""))

# Celery
# ------------------------------------------------------------------------------
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-url
# Heroku's Redis add-on sets REDIS_URL; CELERY_BROKER_URL wins when both are set.
CELERY_BROKER_URL = redis_url(env("CELERY_BROKER_URL", default="")) or REDIS_URL
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-use-ssl
# kombu's Redis transport reads no TLS option from the URL: they come from it here, by the same
# policy (None for any other broker). The result backend reads them from its URL.
CELERY_BROKER_USE_SSL = tls_options(CELERY_BROKER_URL)
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-always-eager
# No broker means no workers: tasks run in the calling process (after the same JSON round trip).
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
if CELERY_TASK_ALWAYS_EAGER:
    # Eager calls still build a producer; the in-memory transport keeps it off the network.
    CELERY_BROKER_URL = "memory://"
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-transport
# On Redis, kombu's transport changed by core.broker so that a worker started on a full Redis
# (maxmemory with noeviction, as Heroku's 25 MB) starts and drains it, rather than exiting.
CELERY_BROKER_TRANSPORT = broker_transport(CELERY_BROKER_URL)
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#result-backend
# Importers record their outcomes in the database; a result backend is optional.
CELERY_RESULT_BACKEND = redis_url(env("CELERY_RESULT_BACKEND", default="")) or None
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-ignore-result
CELERY_TASK_IGNORE_RESULT = not CELERY_RESULT_BACKEND
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#accept-content
# JSON only: a pickled message is refused, so a message cannot run code on a worker.
CELERY_ACCEPT_CONTENT = ["json"]
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-serializer
CELERY_TASK_SERIALIZER = "json"
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#result-serializer
CELERY_RESULT_SERIALIZER = "json"
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#result-accept-content
CELERY_RESULT_ACCEPT_CONTENT = ["json"]
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-soft-time-limit
# A task past this is interrupted (SoftTimeLimitExceeded) and can still record its failure.
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=600)
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-time-limit
# A task that ignores the soft limit is killed rather than holding a worker forever.
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=660)
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-acks-late
# Acknowledge a message after its task ran, not before: if the worker dies mid-task the
# message is delivered again. Importers are idempotent, so a second run does no harm.
CELERY_TASK_ACKS_LATE = True
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-reject-on-worker-lost
# A pool process killed mid-task (OOM, SIGKILL) requeues the message instead of failing it.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#worker-prefetch-multiplier
# One message at a time per pool process: long imports do not hold others back, and a dying
# worker has few messages in flight.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# The longest countdown or ETA an importer task may be sent with (the method caller's apply_async
# enforces it, for signatures, chains and groups too).
IMPORTER_MAX_COUNTDOWN = env.int("IMPORTER_MAX_COUNTDOWN", default=600)
# A command sending many calls (import_wikidata --file) sends while fewer than this many messages
# wait in the queue, and waits for the workers otherwise (core.backlog): a Redis broker keeps them
# in memory, and Heroku's mini Key-Value Store has 25 MB. A message of one id takes about 1.2 KB
# of Redis memory (README, "Deploy"): 5,000 take about 6 MB, with room for the messages the
# workers hold and the request budget's keys.
IMPORTER_MAX_QUEUED_MESSAGES = env.int("IMPORTER_MAX_QUEUED_MESSAGES", default=5000)
# How deep a task method's argument may nest (1 to 100). Real arguments nest two or three levels;
# a worker's main process pickles them for its pool, and a list nested some 485 levels deep
# exhausts Python's stack there and stops the worker. A worker refuses, before its pool sees it,
# a message nested deeper than twice this plus 32 levels of envelope (core.receiving).
IMPORTER_MAX_ARGUMENT_DEPTH = env.int("IMPORTER_MAX_ARGUMENT_DEPTH", default=32)
# The largest task message body, in bytes of JSON, that a worker reads (64 KiB to 64 MiB); the
# sender refuses arguments larger than this less 4 KiB. The largest real call, a batch of 50
# ids, takes about 1 KB; a worker's main process decodes a body into several times its size.
IMPORTER_MAX_MESSAGE_BYTES = env.int("IMPORTER_MAX_MESSAGE_BYTES", default=1024 * 1024)
# A message whose task killed the pool process running it this many times (out of memory,
# os._exit, a crash in C) is not run again: its importer's poisoned() hook records the failure,
# and it is discarded. Without a bound, task_reject_on_worker_lost would redeliver it forever.
# Counted in a header of the message, so across workers (core.receiving).
IMPORTER_MAX_WORKER_LOSSES = env.int("IMPORTER_MAX_WORKER_LOSSES", default=3)
# With the database unavailable, a task waits this many seconds for it, trying again (keeping
# what it fetched); then the method caller sends the task again, up to IMPORTER_DATABASE_RETRIES
# times with a countdown doubling from 1 s to IMPORTER_DATABASE_RETRY_MAX_COUNTDOWN: about 8 minutes
# of outage in all by default, before the task fails with no outcome recorded.
IMPORTER_DATABASE_WAIT = env.float("IMPORTER_DATABASE_WAIT", default=30.0)
IMPORTER_DATABASE_RETRIES = env.int("IMPORTER_DATABASE_RETRIES", default=10)
IMPORTER_DATABASE_RETRY_MAX_COUNTDOWN = env.int("IMPORTER_DATABASE_RETRY_MAX_COUNTDOWN", default=60)
# https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html#visibility-timeout
# On Redis, a message not acknowledged within this many seconds is delivered again, so it
# must exceed the longest task (the hard time limit) plus the longest countdown, or a task
# would run twice while the first run is still going. tests/config checks the ordering.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = CELERY_BROKER_TRANSPORT_OPTIONS
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-publish-retry-policy
# With the broker down, give up publishing within seconds and say so, rather than hang.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5}
# Celery's Django fixup closes the database connection around every task unless this is set
# (then it does so every 2 x this many tasks); core.tasks drops broken or old connections instead.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#worker-cancel-long-running-tasks-on-connection-loss
# Acks-late tasks running when the broker connection is lost are redelivered anyway.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# A SIGTERM starts a warm shutdown (running tasks finish; core.worker keeps pool processes alive
# through a SIGTERM sent to every process, as Heroku sends it). After this many seconds it turns
# into a cold shutdown: the tasks still running are cancelled and their messages go back to the
# queue at once, before Heroku's SIGKILL (30 s after SIGTERM) would leave them to the visibility
# timeout. 0 waits as long as the tasks take.
IMPORTER_WARM_SHUTDOWN_TIMEOUT = env.float("IMPORTER_WARM_SHUTDOWN_TIMEOUT", default=25.0)
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-connection-retry-on-startup
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#worker-hijack-root-logger
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Wikidata importer
# ------------------------------------------------------------------------------
# Where entities are fetched: {base}/wiki/Special:EntityData/{ID}.json
WIKIDATA_BASE_URL = env("WIKIDATA_BASE_URL", default="https://www.wikidata.org/")
# Wikimedia's User-Agent policy asks for a descriptive agent with contact details:
# https://foundation.wikimedia.org/wiki/Policy:Wikimedia_Foundation_User-Agent_Policy
WIKIDATA_USER_AGENT = env(
    "WIKIDATA_USER_AGENT",
    default="wikidata-importers/0.1.0 (set WIKIDATA_USER_AGENT to name your deployment and a contact)",
)
# Seconds to wait for a connection or a read; the wikidata package sets no timeout itself.
WIKIDATA_TIMEOUT = env.float("WIKIDATA_TIMEOUT", default=20.0)
# The language of the stored label and description (with fallbacks where it is missing).
WIKIDATA_LANGUAGE = env("WIKIDATA_LANGUAGE", default="en")
# Retries of a 429, a 5xx, a connection error or a timeout, with exponential backoff and jitter.
# They happen inside the task: the longest fetch (importers.wikidata_api.longest_fetch_seconds) must
# stay within CELERY_TASK_SOFT_TIME_LIMIT; tests/config checks it.
WIKIDATA_MAX_RETRIES = env.int("WIKIDATA_MAX_RETRIES", default=5)
WIKIDATA_BACKOFF_FACTOR = env.float("WIKIDATA_BACKOFF_FACTOR", default=1.0)
WIKIDATA_BACKOFF_MAX = env.float("WIKIDATA_BACKOFF_MAX", default=30.0)
# A Retry-After header is obeyed, but never for longer than this many seconds.
WIKIDATA_RETRY_AFTER_MAX = env.float("WIKIDATA_RETRY_AFTER_MAX", default=60.0)
# The Wikidata tasks have a queue of their own, so that workers can be given to it alone.
WIKIDATA_QUEUE = env("WIKIDATA_QUEUE", default="wikidata")
# WIKIDATA_TIMEOUT bounds each wait for data, not an answer: a server sending a byte a second
# would never trip it. Each attempt (a request, its redirects within the host and the whole
# answer) is cut off this many seconds after it starts, and counts as a timeout (retried).
WIKIDATA_ATTEMPT_DEADLINE = env.float("WIKIDATA_ATTEMPT_DEADLINE", default=2 * WIKIDATA_TIMEOUT)
# The largest answer read, in bytes, after gzip decoding; a larger one is failed unread. Wikibase
# refuses to save an entity whose serialization exceeds maxSerializedEntitySize (by default
# MediaWiki's page size limit, 2 MiB); the JSON Wikidata serves adds a datatype, a hash and an id to
# every snak, so its largest items come to a few MB (a well-kept item such as Q42 was 150 KB in
# 2018). 16 MiB takes the largest with room to spare, and most wbgetentities batches of 50; a batch
# beyond it is fetched one id at a time. It also bounds the memory a decoded answer takes (a small
# multiple of its size).
WIKIDATA_MAX_RESPONSE_BYTES = env.int("WIKIDATA_MAX_RESPONSE_BYTES", default=16 * 1024 * 1024)
# The most JSON values an answer may hold, counted before it is decoded: 16 MiB of empty arrays
# would decode into 5.6 million lists (close to a gigabyte). Real documents hold about one value
# per 50 bytes (Q42: 7,068 in 383 KB), so a full 16 MiB batch some 350,000.
WIKIDATA_MAX_RESPONSE_VALUES = env.int("WIKIDATA_MAX_RESPONSE_VALUES", default=1_000_000)
# The request budget that every process importing from Wikidata shares (core.budget). Wikimedia
# asks API clients to keep at most 3 requests in flight and to honour Retry-After
# (https://www.mediawiki.org/wiki/Wikimedia_APIs/Rate_limits, 2026): a slot is taken for each
# request, from every worker together, and a 429 (or maxlag) with Retry-After pauses them all.
WIKIDATA_MAX_IN_FLIGHT = env.int("WIKIDATA_MAX_IN_FLIGHT", default=3)
# No per-minute cap by default: Wikimedia publishes no number for reading clients that identify
# themselves with a User-Agent (only low ones for anonymous bots, while the rest are "being
# finalized"), and names the in-flight cap and Retry-After as the rules to follow. Where a cap
# applies, set it: e.g. 83 for the 5,000 requests an hour of api.wikimedia.org's authenticated clients.
WIKIDATA_MAX_REQUESTS_PER_MINUTE = env.int("WIKIDATA_MAX_REQUESTS_PER_MINUTE", default=0) or None
# Where the budget is kept: a Redis that every worker reaches (the broker's, when the broker is
# Redis, else Heroku's REDIS_URL). Empty: in this process's memory, which shares it with nobody,
# fine for imports that run in process. A slot is a lease of WIKIDATA_ATTEMPT_DEADLINE + 1 s: a
# worker killed while holding slots gives them back by itself within that time.
_BROKER_REDIS = CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else ""
WIKIDATA_LIMITER_URL = redis_url(env("WIKIDATA_LIMITER_URL", default="")) or _BROKER_REDIS or REDIS_URL
# The prefix of the budget's Redis keys: deployments sharing a Redis share a budget by sharing it.
WIKIDATA_LIMITER_KEY = env("WIKIDATA_LIMITER_KEY", default="wikidata-budget")
# Imports that run in process (no broker, or --sync) fetch on this many threads, under the same
# budget: more threads than slots, so that one thread's database work overlaps the others' requests.
WIKIDATA_IN_PROCESS_THREADS = env.int("WIKIDATA_IN_PROCESS_THREADS", default=2 * WIKIDATA_MAX_IN_FLIGHT)

# Wikidata JSON dump importer (import_wikidata_dump)
# ------------------------------------------------------------------------------
# The queue of the chunk tasks; empty: Celery's default queue, which the Procfile's worker consumes.
# They make no request to Wikidata, so they stay off WIKIDATA_QUEUE and its concurrency limit.
WIKIDATA_DUMP_QUEUE = env("WIKIDATA_DUMP_QUEUE", default="")
# A chunk ends at the first line end past this many (uncompressed) bytes: about 1,300 entities of
# today's dumps (13 KB each on average), a few seconds of one worker process, well within
# CELERY_TASK_SOFT_TIME_LIMIT, and enough chunks to keep several worker processes busy.
WIKIDATA_DUMP_CHUNK_BYTES = env.int("WIKIDATA_DUMP_CHUNK_BYTES", default=16 * 1024 * 1024)
# A .gz dump gzipped as Wikimedia gzips it (a member per batch of lines, about 70 MB each) is
# not cut into chunk files: it is sliced where a member starts, near every this many compressed
# bytes, and each worker inflates its own slice (importers.dump.slices). A slice is at least one
# member: about 65,000 entities of today's dumps, a minute of one worker process.
WIKIDATA_DUMP_SLICE_BYTES = env.int("WIKIDATA_DUMP_SLICE_BYTES", default=64 * 1024 * 1024)
# Where the command writes the chunks of a compressed dump, for the workers to read at the same
# path; empty: a directory beside the dump, named after it (<dump>.chunks).
WIKIDATA_DUMP_CHUNK_DIR = env("WIKIDATA_DUMP_CHUNK_DIR", default="")
# At most this many chunk files wait for a worker: the command pauses until workers catch up, so
# that a 1.5 TB dump needs this many chunks' disk (1 GiB by default), not its own size again.
WIKIDATA_DUMP_MAX_SPOOLED_CHUNKS = env.int("WIKIDATA_DUMP_MAX_SPOOLED_CHUNKS", default=64)
# The longest line read; a longer one is recorded as a bad line, read in pieces and dropped,
# never held whole. Wikidata's largest entities serialize to a few MB.
WIKIDATA_DUMP_MAX_LINE_BYTES = env.int("WIKIDATA_DUMP_MAX_LINE_BYTES", default=16 * 1024 * 1024)

# Wikidata follower (follow_wikidata)
# ------------------------------------------------------------------------------
# Wikimedia EventStreams' recentchange stream (server-sent events, every wiki; 7 days kept).
WIKIDATA_STREAM_URL = env(
    "WIKIDATA_STREAM_URL", default="https://stream.wikimedia.org/v2/stream/recentchange"
)
# A batch of changed ids goes when it holds 50 ids or its oldest change is this many seconds old:
# the stream sends no heartbeats, so a quiet stream still sends what it has within this time.
# 2.5 s, not 2: at 20 edits a second 2 s gathers about 37 ids, 1.25 times the requests of full
# batches (bench 10); 2.5 s gathers about 46 (1.07 times), and keeps the lag's p95 under 3 s.
WIKIDATA_FOLLOW_BATCH_SECONDS = env.float("WIKIDATA_FOLLOW_BATCH_SECONDS", default=2.5)
# One follower per deployment (Wikimedia allows 2 stream connections per client address): it holds
# a lease of this many seconds in WIKIDATA_LIMITER_URL's Redis, renewed every third of it; another
# follower waits as a standby and takes over at most this long (plus 2 s) after the holder died.
# Without a Redis there is no lease: run one follower.
WIKIDATA_FOLLOW_LEASE_SECONDS = env.float("WIKIDATA_FOLLOW_LEASE_SECONDS", default=15.0)
# The stream down (refused, silent, unreachable) for longer than this many seconds: the changes
# since the position are repaired from the API's recent changes while it is tried again.
WIKIDATA_FOLLOW_REPAIR_AFTER = env.float("WIKIDATA_FOLLOW_REPAIR_AFTER", default=300.0)
