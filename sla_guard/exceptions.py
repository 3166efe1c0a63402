"""Exceptions raised by sla-guard, in one place so callers can catch them by meaning."""

from redis.exceptions import RedisError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

TRANSIENT = (OperationalError, InterfaceError, PoolTimeout, RedisError, ConnectionError, TimeoutError)
"""Failures of the services (the database, Redis), not of the lead or the clock being worked on:
that work is tried again later, never set aside."""


class SlaGuardError(Exception):
    """Base class of every error sla-guard raises on purpose."""


class ConfigError(SlaGuardError):
    """A setting is missing or invalid; the message names the setting."""


class RulesError(SlaGuardError):
    """The rules file is invalid.

    ``errors`` holds ``(path, message)`` pairs where ``path`` points into the file,
    for example ``rules[2].first_touch.within``.
    """

    def __init__(self, errors):
        self.errors = list(errors)
        super().__init__("; ".join(f"{path}: {message}" if path else message for path, message in self.errors))


class InvalidEvent(SlaGuardError):
    """A webhook body does not hold a valid event; ``field`` names the offending field."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class Unauthorized(SlaGuardError):
    """A webhook failed its authenticity check (signature, token, account)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


# --- sending to outside services (channels, CRMs) -------------------------------------------


class DeliveryError(SlaGuardError):
    """Sending to an outside service (a chat, a mailbox, a webhook, a CRM) failed.

    Every failure is one of three kinds (:attr:`kind`): ``retryable`` (a timeout, a 5xx: try
    again after the backoff), ``rate_limited`` (the service said "not so fast": try again after
    :attr:`retry_after_s`, which it usually names) or ``permanent`` (wrong credentials, a removed
    chat, invalid data: retrying cannot help). ``transient`` is true for the first two.
    The message names the service and the problem and never holds a secret.
    """

    RETRYABLE = "retryable"
    RATE_LIMITED = "rate_limited"
    PERMANENT = "permanent"

    def __init__(
        self,
        message: str,
        transient: bool = False,
        retry_after_s: float | None = None,
        *,
        status: int | None = None,
        rate_limited: bool = False,
    ):
        super().__init__(message)
        self.transient = bool(transient or rate_limited)
        self.retry_after_s = retry_after_s
        self.status = status
        self.rate_limited = rate_limited

    @property
    def kind(self) -> str:
        if self.rate_limited:
            return self.RATE_LIMITED
        return self.RETRYABLE if self.transient else self.PERMANENT

    @property
    def retryable(self) -> bool:
        """Whether trying again later may succeed (the same as :attr:`transient`)."""
        return self.transient

    def __reduce__(self):
        # RQ may carry an error between processes: keep the class, the message and every field.
        return _restore, (type(self), str(self), dict(self.__dict__))


def _restore(cls: type[DeliveryError], message: str, state: dict) -> DeliveryError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class ServiceError(DeliveryError):
    """A :class:`DeliveryError` of one named service: the message reads ``"<service>: <problem>"``
    (just ``"<problem>"`` when the service has no name, as for a plain webhook)."""

    def __init__(
        self,
        service: str,
        message: str,
        *,
        transient: bool = False,
        retry_after_s: float | None = None,
        status: int | None = None,
        rate_limited: bool = False,
    ):
        self.service = service
        text = f"{service}: {message}" if service else message
        super().__init__(text, transient, retry_after_s, status=status, rate_limited=rate_limited)


class TaskError(ServiceError):
    """A CRM REST call of a task client (create, find, close, read a task; set an owner) failed."""

    @property
    def crm(self) -> str:
        return self.service


class TaskNotFound(TaskError):
    """The task, or the lead it belongs to, does not exist (any more) in the CRM. Permanent."""

    def __init__(self, crm: str, message: str, *, status: int | None = None):
        super().__init__(crm, message, transient=False, status=status)


class CrmReadError(ServiceError):
    """A CRM read-back (a Bitrix24 record, an amoCRM loss reason) failed."""


class InvalidReportQuery(SlaGuardError):
    """A report was asked for with a bad parameter; ``field`` names it (``from``, ``by``...)."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")
