"""Exceptions raised by sla-guard, in one place so callers can catch them by meaning."""


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


class InvalidReportQuery(SlaGuardError):
    """A report was asked for with a bad parameter; ``field`` names it (``from``, ``by``...)."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")
