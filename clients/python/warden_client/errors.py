"""Typed errors: one class per code of the warden API, each carrying the code and the HTTP status."""

from __future__ import annotations


class WardenError(Exception):
    """An error answered by a warden server (or none answering: ``UnreachableError``)."""

    def __init__(self, message: str, code: str, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


class InvalidRequestError(WardenError):
    """A field was missing or out of range; the message names it."""


class UnauthorizedError(WardenError):
    """The server wants an API key, or does not know this one."""


class ForbiddenError(WardenError):
    """The key's role or namespaces do not allow the call."""


class NotFoundError(WardenError):
    """No such lease (never existed, released, or expired)."""


class RequestTimeoutError(WardenError):
    """The request body did not arrive in time."""


class LockTimeoutError(WardenError):
    """The lock was not acquired before the wait ran out."""


class NotOwnerError(WardenError):
    """The lease is held by another client id."""


class LeaseLostError(WardenError):
    """The lease can no longer be trusted: it expired, was taken away, or a renewal came too late."""


class RenewalCappedError(WardenError):
    """The lease reached its renewal or hold cap."""


class ConflictError(WardenError):
    """The resource is in use in a way the acquire does not match: a semaphore with other permits, or a lock."""


class ConditionFailedError(WardenError):
    """A conditional acquire's condition (``if_fencing_token``, ``if_not_granted_within``) does not hold; the
    message says what the resource's history shows. Nothing is held."""


class TooManyWaitersError(WardenError):
    """The server parks no more waiters for this resource (or at all)."""


class RateLimitedError(WardenError):
    """Over the key's rate; ``retry_after`` says how many seconds to wait."""

    retry_after: float | None = None


class BackendUnavailableError(WardenError):
    """The server cannot reach its backend; retry later."""


class ShuttingDownError(WardenError):
    """The server is shutting down."""


class InternalError(WardenError):
    """The server failed unexpectedly."""


class UnreachableError(WardenError):
    """No warden server answered at the URL."""


BY_CODE: dict[str, type[WardenError]] = {
    "invalid_request": InvalidRequestError,
    "unauthorized": UnauthorizedError,
    "forbidden": ForbiddenError,
    "not_found": NotFoundError,
    "request_timeout": RequestTimeoutError,
    "lock_timeout": LockTimeoutError,
    "not_owner": NotOwnerError,
    "lease_lost": LeaseLostError,
    "renewal_capped": RenewalCappedError,
    "conflict": ConflictError,
    "condition_failed": ConditionFailedError,
    "too_many_waiters": TooManyWaitersError,
    "rate_limited": RateLimitedError,
    "backend_unavailable": BackendUnavailableError,
    "shutting_down": ShuttingDownError,
    "internal": InternalError,
}
