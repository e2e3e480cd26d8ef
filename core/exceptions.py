"""The exceptions of the importer framework."""


class ImporterError(Exception):
    """Base class of every error the importer framework raises."""


class NotRegistered(ImporterError, KeyError):
    """No importer is registered under the requested key."""

    def __str__(self) -> str:
        # KeyError's str() is the repr of its argument; a sentence reads better.
        return str(self.args[0]) if self.args else super().__str__()


class AlreadyRegistered(ImporterError):
    """A different importer class is already registered under the same key."""


class InvalidTaskCall(ImporterError):
    """A method-caller message that must not run: unknown importer, undeclared method, bad arguments.

    It is never retried: sending the same message again cannot make it valid.
    """


class TaskFailed(ImporterError):
    """A task method's expected failure, which the importer has already recorded.

    The task fails and the failure is logged in one line, without a traceback.
    """


class PoisonMessage(ImporterError):
    """A call whose task killed the pool process running it ``IMPORTER_MAX_WORKER_LOSSES`` times.

    It is not run again: its importer's ``poisoned()`` hook is called instead, then the message
    is discarded. ``task_id`` is the Celery task's; ``losses`` how many pool processes it killed.
    """

    def __init__(self, message: str, *, task_id: str | None = None, losses: int = 0) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.losses = losses


class EnqueueFailed(ImporterError):
    """The broker could not be reached (after Celery's publish retries) while sending calls.

    ``sent`` calls went out before the failure; the one that failed and any after it did not.
    ``broker`` is the broker's URL without its password. The broker's own error is the ``__cause__``.
    """

    def __init__(self, sent: int, error: Exception, broker: str = "") -> None:
        where = f" at {broker}" if broker else ""
        super().__init__(f"the broker{where} could not be reached after {sent} sent: {error}")
        self.sent = sent
        self.broker = broker
