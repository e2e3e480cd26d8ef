"""Production settings: no defaults for secrets, HTTPS only, behind Heroku's router."""

from .base import *  # noqa: F403
from .base import MIDDLEWARE, STORAGES, database, env

# A missing DJANGO_SECRET_KEY stops start-up with ImproperlyConfigured.
SECRET_KEY = env("DJANGO_SECRET_KEY")
# So does a missing DATABASE_URL: a production process on the embedded SQLite would keep its data
# on a disk that Heroku wipes, apart from every other process.
DATABASES = {"default": database(env("DATABASE_URL"))}
DEBUG = False
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
# Heroku terminates TLS at its router and says so in this header.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
# Uptime checks may call the health URL over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^health/$"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# The web process serves the admin's static files itself, compressed and cache-busted
# (Heroku's Python buildpack runs collectstatic at build time).
MIDDLEWARE = [MIDDLEWARE[0], "whitenoise.middleware.WhiteNoiseMiddleware", *MIDDLEWARE[1:]]
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}
