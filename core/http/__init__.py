"""A bounded HTTP GET (``get``), with the limits its caller gives (``Limits``)."""

from .get import Answer, GetFailed, Limits, backoff, get, retry_wait

__all__ = ("Answer", "GetFailed", "Limits", "backoff", "get", "retry_wait")
