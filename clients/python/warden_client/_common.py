"""What the sync and asyncio clients share: request bodies, the lease's fields and its validity."""

from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from .errors import InvalidRequestError

#: Every endpoint the clients call (method, path): a test checks each against the server's /openapi.json.
ENDPOINTS = [
    ("post", "/api/locks/acquire"),
    ("post", "/api/locks/release"),
    ("post", "/api/locks/renew"),
    ("get", "/api/locks/{lockId}/status"),
    ("get", "/api/locks/held"),
    ("get", "/api/locks/queue"),
    ("get", "/api/locks/stats"),
    ("get", "/api/locks/analytics"),
    ("get", "/api/locks/health"),
    ("post", "/api/groups/acquire"),
    ("post", "/api/paths/acquire"),
    ("post", "/api/groups/release"),
    ("post", "/api/groups/renew"),
]

#: The longest wait one request may carry (seconds); longer waits are several requests.
MAX_WAIT = 600.0

MODES = {
    "exclusive": {"type": "exclusive"},
    "shared": {"type": "shared"},
    "read": {"type": "read-write", "mode": "read"},
    "write": {"type": "read-write", "mode": "write"},
}


def ms(name: str, seconds: float, low_ms: int, high_ms: int) -> int:
    value = round(seconds * 1000)
    if not low_ms <= value <= high_ms:
        raise InvalidRequestError(
            f"{name} must be from {low_ms / 1000} to {high_ms / 1000} seconds, got {seconds}", "invalid_request"
        )
    return value


def acquire_body(
    resource: str,
    ttl: float,
    wait: float,
    mode: str,
    client_id: str,
    max_renewals: int | None,
    max_hold: float | None,
    permits: int | None = None,
    if_fencing_token: int | None = None,
    if_not_granted_within: float | None = None,
    priority: int = 0,
) -> dict[str, Any]:
    if mode not in MODES:
        raise InvalidRequestError(f"mode must be exclusive, shared, read or write, got {mode!r}", "invalid_request")
    kind: dict[str, Any] = MODES[mode]
    if permits is not None:
        # One of ``permits`` permits of a semaphore.
        if mode != "exclusive":
            raise InvalidRequestError("permits and mode do not go together: a semaphore has no mode", "invalid_request")
        if not isinstance(permits, int) or isinstance(permits, bool) or not 1 <= permits <= 1000:
            raise InvalidRequestError(f"permits must be a whole number from 1 to 1000, got {permits!r}", "invalid_request")
        kind = {"type": "semaphore", "permits": permits}
    body: dict[str, Any] = {
        "resource": resource,
        **kind,
        "ttl": ms("ttl", ttl, 10, 86_400_000),
        "waitTimeout": ms("wait", min(wait, MAX_WAIT), 0, 600_000),
        "clientId": client_id,
    }
    if max_renewals is not None:
        body["maxRenewals"] = max_renewals
    if max_hold is not None:
        body["maxHold"] = ms("max_hold", max_hold, 1, 86_400_000 * 365)
    if if_fencing_token is not None and if_not_granted_within is not None:
        raise InvalidRequestError("give one condition: if_fencing_token or if_not_granted_within", "invalid_request")
    if if_fencing_token is not None:
        if not isinstance(if_fencing_token, int) or isinstance(if_fencing_token, bool) or if_fencing_token < 1:
            raise InvalidRequestError(
                f"if_fencing_token must be a fencing token warden issued (1 or more), got {if_fencing_token!r}",
                "invalid_request",
            )
        body["ifFencingToken"] = if_fencing_token
    if if_not_granted_within is not None:
        body["ifNotGrantedWithin"] = ms("if_not_granted_within", if_not_granted_within, 1, 86_400_000)
    if priority != 0:
        if not isinstance(priority, int) or isinstance(priority, bool) or not -100 <= priority <= 100:
            raise InvalidRequestError(f"priority must be a whole number from -100 to 100, got {priority!r}", "invalid_request")
        body["priority"] = priority
    return body


def group_body(
    members: list[str | dict[str, Any]],
    ttl: float,
    wait: float,
    client_id: str,
    max_renewals: int | None,
    max_hold: float | None,
) -> dict[str, Any]:
    """The body of a group acquire: ``members`` are names (exclusive) or ``{"resource", "mode"?, "permits"?}``."""
    if not isinstance(members, list):
        raise InvalidRequestError("members must be a list of names or {resource, mode?, permits?}", "invalid_request")
    wire = []
    for m in members:
        spec = {"resource": m} if isinstance(m, str) else dict(m)
        one = acquire_body(
            spec.get("resource", ""), ttl, 0, spec.get("mode", "exclusive"), client_id, None, None, spec.get("permits")
        )
        wire.append({k: one[k] for k in ("resource", "type", "mode", "permits") if k in one})
    body = acquire_body("", ttl, wait, "exclusive", client_id, max_renewals, max_hold)
    del body["resource"], body["type"]
    if wait > MAX_WAIT:
        raise InvalidRequestError(f"a group waits at most {MAX_WAIT} seconds, got {wait}", "invalid_request")
    return {"members": wire, **body}


def path_body(
    path: str,
    shared: bool,
    separator: str,
    ttl: float,
    wait: float,
    client_id: str,
    max_renewals: int | None,
    max_hold: float | None,
) -> dict[str, Any]:
    """The body of a path lock: the options of a group, the path, its separator and its mode."""
    if not isinstance(path, str) or not path:
        raise InvalidRequestError("path must be a non-empty string", "invalid_request")
    if not isinstance(separator, str) or len(separator) != 1:
        raise InvalidRequestError(f"separator must be one character, got {separator!r}", "invalid_request")
    body = group_body([], ttl, wait, client_id, max_renewals, max_hold)
    del body["members"]
    return {"path": path, "separator": separator, "mode": "shared" if shared else "exclusive", **body}


def group_from_wire(data: dict[str, Any], sent: float) -> tuple[str, list[LeaseInfo]]:
    """A group's id and its members' leases, in the global order."""
    return data["groupId"], [LeaseInfo.from_wire(lock, sent) for lock in data["locks"]]


class GroupFields:
    """What a held group shows, in the sync and the asyncio client alike: ``locks``, one lease per member in the
    global order; ``fencing_tokens``, each member's own token by resource. Its lock id is the group's id."""

    group_id: str
    locks: list[LeaseInfo]
    info: LeaseInfo

    def _take(self, data: dict[str, Any], sent: float) -> None:
        """Takes the members' leases from an acquire's or renewal's answer; ``info`` is the one that ends first."""
        self.group_id, self.locks = group_from_wire(data, sent)
        self.info = min(self.locks, key=lambda m: m.valid_until)

    def _renew_body(self, client_id: str, ttl: float | None) -> dict[str, Any]:
        body: dict[str, Any] = {"groupId": self.group_id, "clientId": client_id}
        if ttl is not None:
            body["ttl"] = round(ttl * 1000)
        return body

    @property
    def lock_id(self) -> str:
        return self.group_id

    @property
    def resource(self) -> str:
        return ", ".join(m.resource for m in self.locks)

    @property
    def fencing_tokens(self) -> dict[str, int]:
        return {m.resource: m.fencing_token for m in self.locks}

    @property
    def fencing_token(self) -> int:
        raise InvalidRequestError("a group has one fencing token per member: use fencing_tokens[resource]", "invalid_request")


def quoted(s: str) -> str:
    return urllib.parse.quote(s, safe="")


@dataclass
class LeaseInfo:
    """A lease as the server last described it."""

    lock_id: str
    lease_handle: str
    resource: str
    type: str
    client_id: str
    acquired_at: str
    expires_at: str
    ttl: float
    #: Strictly increasing per resource: hand it to the protected resource with every write.
    fencing_token: int
    renewal_count: int
    #: time.monotonic() until which the lease is trusted: the ttl from the request's send, less the clock allowance.
    valid_until: float

    @classmethod
    def from_wire(cls, data: dict[str, Any], sent: float, lock_id: str | None = None) -> LeaseInfo:
        ttl_ms = data["ttl"]
        return cls(
            lock_id=data.get("lockId") or lock_id or "",
            lease_handle=data.get("leaseHandle", ""),
            resource=data["resource"],
            type=data["type"],
            client_id=data["clientId"],
            acquired_at=data["acquiredAt"],
            expires_at=data["expiresAt"],
            ttl=ttl_ms / 1000,
            fencing_token=data["fencingToken"],
            renewal_count=data.get("renewalCount", 0),
            valid_until=sent + (ttl_ms - (ttl_ms * 0.01 + 2)) / 1000,
        )


def now() -> float:
    return time.monotonic()
