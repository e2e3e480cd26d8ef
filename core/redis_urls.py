"""Redis URLs: the one TLS policy every Redis client of the project gets, and URLs fit for messages.

Every Redis client the project makes (Celery's broker and result backend, the request budget and
its rate cap, the health check, anything added later) is made from a URL in the settings, and
the settings pass each through ``with_tls_policy``: a ``rediss://`` URL then carries its
certificate policy in its query, where kombu, Celery's backend, redis-py and ``limits`` all read
it. One policy, one place, and no client falls back to its own default (kombu's is to warn on
every connection, redis-py's to refuse Heroku's self-signed certificate).

The policy: a URL's own ``ssl_cert_reqs`` and ``ssl_ca_certs`` win; otherwise the settings
``REDIS_SSL_CERT_REQS`` (``none``, ``optional`` or ``required``) and ``REDIS_SSL_CA_CERTS`` decide.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ("CERT_REQS", "describe_tls", "is_tls", "safe_url", "tls_options", "with_tls_policy")

# The values every client understands, in the spelling redis-py requires; kombu's and Celery's
# spelling (CERT_NONE, ...) is accepted in a URL and rewritten to these.
CERT_REQS = ("none", "optional", "required")
_VERIFY_MODES = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
_SPELLINGS = {
    **{value: value for value in CERT_REQS},
    **{f"CERT_{value.upper()}": value for value in CERT_REQS},
}


def is_tls(url: str) -> bool:
    """Whether ``url`` is a Redis URL over TLS (``rediss://``)."""
    return url.startswith("rediss://")


def with_tls_policy(url: str, cert_reqs: str, ca_certs: str = "") -> str:
    """Return ``url`` with its TLS options explicit when it is ``rediss://``; any other URL as it is.

    The URL's own ``ssl_cert_reqs`` and ``ssl_ca_certs`` win over ``cert_reqs`` and ``ca_certs``.

    Raises:
        ValueError: ``cert_reqs``, or the URL's ``ssl_cert_reqs``, is not one of ``CERT_REQS``.
    """
    policy = _cert_reqs(cert_reqs, "REDIS_SSL_CERT_REQS")
    if not is_tls(url):
        return url
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query["ssl_cert_reqs"] = _cert_reqs(
        query.get("ssl_cert_reqs", policy), f"ssl_cert_reqs of {safe_url(url)}"
    )
    if ca_certs and not query.get("ssl_ca_certs"):
        query["ssl_ca_certs"] = ca_certs
    return urlunsplit(parts._replace(query=urlencode(query)))


def tls_options(url: str) -> dict[str, Any] | None:
    """The TLS options of a ``rediss://`` URL as a dict for kombu (``broker_use_ssl``); else ``None``.

    kombu's Redis transport reads none of them from the URL, and warns on every connection when
    it has none: they are taken from the URL that ``with_tls_policy`` made explicit.
    """
    if not is_tls(url):
        return None
    query = dict(parse_qsl(urlsplit(url).query))
    verify = _cert_reqs(query.get("ssl_cert_reqs", "required"), f"ssl_cert_reqs of {safe_url(url)}")
    options: dict[str, Any] = {"ssl_cert_reqs": _VERIFY_MODES[verify]}
    if query.get("ssl_ca_certs"):
        options["ssl_ca_certs"] = query["ssl_ca_certs"]
    return options


def describe_tls(url: str) -> str:
    """One line saying how ``url`` is reached: in plain text, or over TLS with which verification."""
    if not is_tls(url):
        return f"{safe_url(url)}: no TLS"
    query = dict(parse_qsl(urlsplit(url).query))
    verify = query.get("ssl_cert_reqs", "required")
    ca = f", CA certificates from {query['ssl_ca_certs']}" if query.get("ssl_ca_certs") else ""
    if verify == "none":
        how = "the server's certificate is not verified (ssl_cert_reqs=none)"
    else:
        how = f"the server's certificate is verified (ssl_cert_reqs={verify}{ca})"
    return f"{safe_url(url)}: TLS, {how}"


def safe_url(url: str) -> str:
    """``url`` without its password, and without its query, for messages and logs."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        host = netloc.rpartition("@")[2]
        netloc = (f"{parts.username}:***@" if parts.username else ":***@") + host
    return urlunsplit(parts._replace(netloc=netloc, query=""))


def _cert_reqs(value: str, what: str) -> str:
    try:
        return _SPELLINGS[value]
    except KeyError:
        choices = ", ".join(CERT_REQS)
        raise ValueError(f"{what} is {value!r}: it must be one of {choices}") from None
