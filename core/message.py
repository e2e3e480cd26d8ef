"""The one message every task method call travels as, and its checks on both sides of the broker.

On the wire a message is the method caller's positional arguments,
``(importer_name, method_name, args, kwargs)``: two strings, a JSON list and a JSON object,
the arguments in the form of ``core.arguments``. The sender encodes it (bind, type-check, pack);
the method caller decodes it (shape, registry, allow-list, unpack, bind, type-check) before
anything is built.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .arguments import JSONValue, pack, unpack
from .exceptions import InvalidTaskCall, NotRegistered
from .registry import registry

if TYPE_CHECKING:
    from .importer import BaseImporter, TaskMethod

__all__ = ("Message", "WireMessage")

# A logged call shows enough of its arguments to tell which call it was, never a whole document.
MAX_LOGGED_CALL = 300
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 80
_short.maxlevel = 3

WireMessage = tuple[str, str, list[JSONValue], dict[str, JSONValue]]


@dataclass(frozen=True)
class Message:
    """A call of ``importer().method_name(*args, **kwargs)``, with the arguments as Python values."""

    importer: type[BaseImporter]
    method_name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``"<importer key>.<method>"``: how the call shows in logs, errors and monitoring."""
        return f"{self.importer.importer_name}.{self.method_name}"

    @property
    def method(self) -> TaskMethod:
        """The task method's declaration."""
        return self.importer.task_methods[self.method_name]

    def encode(self, *, partial: bool = False) -> WireMessage:
        """Return the message as it travels, after checking that it can.

        ``partial`` is for a mutable signature in a chain, which is given the previous task's
        result as its first argument: only the arguments given so far are bound and checked.

        Raises:
            TypeError: the importer is abstract, or the arguments do not bind, do not match the
                method's annotations or cannot make the JSON trip unchanged; names the call.
        """
        if self.importer.abstract:
            raise TypeError(
                f"{self.label}: {self.importer.importer_name} is an abstract importer, whose task "
                "methods cannot be sent; send them from a concrete subclass"
            )
        try:
            self._check(partial=partial)
            args, kwargs = pack(self.args, self.kwargs)
        except TypeError as error:
            raise TypeError(f"{self.label}(): {error}") from None
        return (self.importer.importer_name, self.method_name, args, kwargs)

    @classmethod
    def decode(cls, body: tuple[Any, ...]) -> Message:
        """Return the message a worker received, after the checks that make it safe to run.

        In a chain, Celery puts the previous task's result in front of the four parts; it
        becomes the method's first argument.

        Raises:
            InvalidTaskCall: a malformed message, an unknown or abstract importer, a method that
                is not a declared task method, or arguments that do not bind or match the
                method's annotations. Nothing was built or called.
        """
        if len(body) not in (4, 5):
            raise InvalidTaskCall(
                f"expected (importer_name, method_name, args, kwargs), got {len(body)} arguments"
            )
        *chained, importer_name, method_name, args, kwargs = body
        if not (isinstance(importer_name, str) and isinstance(method_name, str)):
            raise InvalidTaskCall("importer_name and method_name must be strings")
        if not (isinstance(args, list) and isinstance(kwargs, dict)):
            raise InvalidTaskCall("args must be a JSON list and kwargs a JSON object")
        try:
            importer = registry[importer_name]
        except NotRegistered as error:
            raise InvalidTaskCall(str(error)) from None
        if importer.abstract:
            raise InvalidTaskCall(f"{importer_name} is an abstract importer and cannot run tasks")
        # The allow-list: only names the class declared as task methods, never any attribute.
        if method_name not in importer.task_methods:
            # Quoted, and cut short: the name is the sender's, and goes into the worker's log.
            raise InvalidTaskCall(f"{method_name!r:.80} is not a declared task method of {importer_name}")
        try:
            args, kwargs = unpack(args, kwargs)
            message = cls(importer, method_name, (*chained, *args), kwargs)
            message._check(partial=False)
        except TypeError as error:
            raise InvalidTaskCall(f"{importer_name}.{method_name}(): {error}") from None
        return message

    def call(self) -> str:
        """The call as Python would write it, each argument's repr bounded: for logs, one line."""
        arguments = [_short.repr(value) for value in self.args]
        arguments += [f"{name}={_short.repr(value)}" for name, value in self.kwargs.items()]
        # repr() escapes what could start a line of its own; the names are declared ones.
        return f"{self.label}({', '.join(arguments)})"[:MAX_LOGGED_CALL]

    def run(self, task_id: str | None = None) -> Any:
        """Make an importer and call the method; return what it returns.

        ``task_id`` is the Celery task's id, which the importer sees as ``self.task_id``.
        """
        importer = self.importer()
        importer.task_id = task_id
        return getattr(importer, self.method_name)(*self.args, **self.kwargs)

    def _check(self, *, partial: bool) -> None:
        method = self.method
        bind = method.signature.bind_partial if partial else method.signature.bind
        method.types.check(bind(None, *self.args, **self.kwargs))
