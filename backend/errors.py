"""Errors whose messages are safe to show to a user as they are (no secrets, no stack traces).

The CLI prints them as one line and exits 2; the API maps them to 4xx; the console shows them in an error box.
"""


class PlatformError(Exception):
    """Base of all user-facing errors."""

    http_status = 400


class InvalidInput(PlatformError, ValueError):
    """A form field, CLI argument or API parameter is wrong; the message names it."""


class NotFound(PlatformError, LookupError):
    http_status = 404


class Conflict(PlatformError):
    """The target changed or already exists (stale etag, duplicate name)."""

    http_status = 409


class Unavailable(PlatformError):
    """A dependency (database, broker, cloud API) cannot be reached right now."""

    http_status = 503


class ConfigError(PlatformError):
    """A setting is missing or invalid; the message says which and what to do."""
