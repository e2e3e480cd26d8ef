"""Production settings: no defaults for secrets, hardened HTTP."""

from .base import *  # noqa: F403
from .base import env

# A missing DJANGO_SECRET_KEY stops start-up with ImproperlyConfigured.
SECRET_KEY = env("DJANGO_SECRET_KEY")
DEBUG = False
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
