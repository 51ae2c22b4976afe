"""warden-client: the warden lock service from Python, sync and asyncio.

    from warden_client import Client
    client = Client("http://127.0.0.1:7070")
    with client.lock("orders:42", ttl=10) as lease:
        lease.check()                      # raises LeaseLostError once the lease can no longer be trusted
        charge(42, fencing_token=lease.fencing_token)
"""

from ._common import ENDPOINTS, LeaseInfo
from .aio import AsyncClient, AsyncElection, AsyncGroup, AsyncLease
from .client import Client, Election, Group, Lease
from .errors import (
    BackendUnavailableError,
    ConditionFailedError,
    ConflictError,
    ForbiddenError,
    InternalError,
    InvalidRequestError,
    LeaseLostError,
    LockTimeoutError,
    NotFoundError,
    NotOwnerError,
    RateLimitedError,
    RenewalCappedError,
    RequestTimeoutError,
    ShuttingDownError,
    TooManyWaitersError,
    UnauthorizedError,
    UnreachableError,
    WardenError,
)

__all__ = [
    "ENDPOINTS",
    "AsyncClient",
    "AsyncElection",
    "AsyncGroup",
    "AsyncLease",
    "BackendUnavailableError",
    "Client",
    "Election",
    "ForbiddenError",
    "Group",
    "InternalError",
    "InvalidRequestError",
    "Lease",
    "LeaseInfo",
    "LeaseLostError",
    "LockTimeoutError",
    "NotFoundError",
    "NotOwnerError",
    "RateLimitedError",
    "RenewalCappedError",
    "ConditionFailedError",
    "ConflictError",
    "RequestTimeoutError",
    "ShuttingDownError",
    "TooManyWaitersError",
    "UnauthorizedError",
    "UnreachableError",
    "WardenError",
]
__version__ = "0.1.0"
