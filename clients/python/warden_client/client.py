"""The synchronous client: locks as context managers that renew in a background thread."""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

from ._common import GroupFields, LeaseInfo, acquire_body, group_body, now, path_body, quoted
from ._transport import Transport
from .errors import LeaseLostError, LockTimeoutError, NotFoundError, NotOwnerError, WardenError


class Client:
    """A client of one warden server.

    ``url`` defaults to ``$WARDEN_URL`` or ``http://127.0.0.1:7070``, ``token`` to ``$WARDEN_TOKEN``; ``client_id``
    (recorded with every lease) to ``python-<pid>``. Times are seconds.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        client_id: str | None = None,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = (url or os.environ.get("WARDEN_URL") or "http://127.0.0.1:7070").rstrip("/")
        self.client_id = client_id or f"python-{os.getpid()}"
        self._t = Transport(self.url, token or os.environ.get("WARDEN_TOKEN"), timeout, ssl_context)

    def acquire(
        self,
        resource: str,
        *,
        ttl: float = 30.0,
        wait: float = 5.0,
        mode: str = "exclusive",
        client_id: str | None = None,
        max_renewals: int | None = None,
        max_hold: float | None = None,
        permits: int | None = None,
        if_fencing_token: int | None = None,
        if_not_granted_within: float | None = None,
        priority: int = 0,
    ) -> Lease:
        """Acquires, waiting up to ``wait`` seconds in the FIFO queue (0: try once; ``float('inf')``: until granted).
        Nothing renews the lease: use it as a context manager, or call ``start_renewing()``. ``permits=N`` takes one
        of N permits of a semaphore instead of a lock (every user of the resource passes the same N).
        ``if_fencing_token=T`` grants only if nobody held the resource since the lease that got T;
        ``if_not_granted_within=S`` only if nobody was granted it in the last S seconds; else
        ``ConditionFailedError``. ``priority=N`` (-100..=100) waits ahead of lower priorities: a waiter queues as if
        it had arrived N x 100 ms earlier (servers over memory or Redis)."""
        who = client_id or self.client_id
        left = wait
        while True:
            body = acquire_body(
                resource,
                ttl,
                left,
                mode,
                who,
                max_renewals,
                max_hold,
                permits,
                if_fencing_token,
                if_not_granted_within,
                priority,
            )
            sent = now()
            try:
                data = self._t.call("POST", "/api/locks/acquire", body, wait=body["waitTimeout"] / 1000)["data"]
                return Lease(self, LeaseInfo.from_wire(data, sent), who)
            except LockTimeoutError:
                # A wait longer than one request allows queues again (at the back) and waits on.
                if left <= 600:
                    raise
                left -= 600

    def lock(self, resource: str, **kwargs: Any) -> Lease:
        """``with client.lock("orders:42", ttl=10) as lease:`` acquires on entry, renews while inside, releases on exit."""
        return _Deferred(self, resource, kwargs)  # type: ignore[return-value]

    def acquire_group(
        self,
        members: list[str | dict[str, Any]],
        *,
        ttl: float = 30.0,
        wait: float = 5.0,
        client_id: str | None = None,
        max_renewals: int | None = None,
        max_hold: float | None = None,
    ) -> Group:
        """Acquires every member or none (names, or ``{"resource", "mode"?, "permits"?}``), waiting up to ``wait``
        seconds (at most 600) for the whole group. Members are taken in one global order, so groups never deadlock;
        a ``LockTimeoutError`` names the member still held, and nothing is then held."""
        who = client_id or self.client_id
        body = group_body(members, ttl, wait, who, max_renewals, max_hold)
        sent = now()
        data = (self._t.call("POST", "/api/groups/acquire", body, wait=body["waitTimeout"] / 1000))["data"]
        return Group(self, data, sent, who)

    def acquire_path(
        self,
        path: str,
        *,
        shared: bool = False,
        separator: str = "/",
        ttl: float = 30.0,
        wait: float = 5.0,
        client_id: str | None = None,
        max_renewals: int | None = None,
        max_hold: float | None = None,
    ) -> Group:
        """Locks a path in a tree (``orders/eu/42``): it excludes locks on anything below and above it, never its
        siblings. It is a group (an intention on each ancestor, then the path); ``fencing_tokens[path]`` is the token
        to pass on."""
        who = client_id or self.client_id
        body = path_body(path, shared, separator, ttl, wait, who, max_renewals, max_hold)
        sent = now()
        data = (self._t.call("POST", "/api/paths/acquire", body, wait=body["waitTimeout"] / 1000))["data"]
        return Group(self, data, sent, who)

    def release(self, lock_id: str, client_id: str | None = None) -> None:
        self._t.call("POST", "/api/locks/release", {"lockId": lock_id, "clientId": client_id or self.client_id})

    def renew(self, lock_id: str, ttl: float | None = None, client_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"lockId": lock_id, "clientId": client_id or self.client_id}
        if ttl is not None:
            body["ttl"] = round(ttl * 1000)
        return self._t.call("POST", "/api/locks/renew", body)["data"]

    def status(self, lock_id: str) -> dict[str, Any]:
        return self._t.call("GET", f"/api/locks/{quoted(lock_id)}/status")["data"]

    def held(self, client_id: str | None = None) -> list[dict[str, Any]]:
        return self._t.call("GET", f"/api/locks/held?clientId={quoted(client_id or self.client_id)}")["data"]

    def queue(self, resource: str) -> dict[str, Any]:
        return self._t.call("GET", f"/api/locks/queue?resource={quoted(resource)}")["data"]

    def stats(self) -> dict[str, Any]:
        return self._t.call("GET", "/api/locks/stats")["data"]

    def analytics(self, top: int = 10, by: str = "grants") -> dict[str, Any]:
        """The server instance's per-resource analytics: the ``top`` resources ranked ``by`` grants, contention,
        wait, hold or expiries."""
        return self._t.call("GET", f"/api/locks/analytics?top={int(top)}&by={quoted(by)}")["data"]

    def health(self) -> dict[str, Any]:
        return self._t.call("GET", "/api/locks/health")["data"]

    def election(self, name: str) -> Election:
        return Election(self, name)

    def close(self) -> None:
        self._t.close()


class Lease:
    """A held lease. ``lost`` is a ``threading.Event`` set the moment it can no longer be trusted; ``check()`` raises
    ``LeaseLostError`` then."""

    def __init__(self, client: Client, info: LeaseInfo, client_id: str) -> None:
        self._client = client
        self._client_id = client_id
        self.info = info
        self.lost = threading.Event()
        self.lost_reason: WardenError | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._released = False

    @property
    def lock_id(self) -> str:
        return self.info.lock_id

    @property
    def fencing_token(self) -> int:
        return self.info.fencing_token

    @property
    def resource(self) -> str:
        return self.info.resource

    def check(self) -> None:
        """Raises ``LeaseLostError`` if the lease can no longer be trusted."""
        if self.lost.is_set() or now() >= self.info.valid_until:
            self._lose(LeaseLostError(f"the lease on {self.resource} ran out before a renewal was confirmed", "lease_lost"))
            why = self.lost_reason
            if isinstance(why, LeaseLostError):
                raise why
            raise LeaseLostError(f"the lease on {self.resource} can no longer be trusted: {why}", "lease_lost") from why

    def _lose(self, reason: WardenError) -> None:
        if not self.lost.is_set():
            self.lost_reason = reason
            self.lost.set()

    def renew(self, ttl: float | None = None) -> None:
        sent = now()
        data = self._client.renew(self.lock_id, ttl, self._client_id)
        self.info = LeaseInfo.from_wire(data, sent, self.lock_id)

    def start_renewing(self) -> Lease:
        """Renews every third of the ttl in a daemon thread until released; sets ``lost`` when a renewal is refused
        or the validity ends unconfirmed."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._renew_loop, name=f"warden-renew-{self.resource}", daemon=True)
            self._thread.start()
        return self

    def _renew_loop(self) -> None:
        next_at = now() + self.info.ttl / 3
        while not self._stop.is_set() and not self.lost.is_set():
            wake = min(next_at, self.info.valid_until)
            if self._stop.wait(max(0.0, wake - now())):
                return
            if now() >= self.info.valid_until:
                self._lose(LeaseLostError(f"the lease on {self.resource} ran out before a renewal was confirmed", "lease_lost"))
                return
            try:
                self.renew()
                next_at = now() + self.info.ttl / 3
            except (LeaseLostError, NotFoundError, NotOwnerError) as e:
                self._lose(e)
                return
            except WardenError:
                # Unreachable or unavailable: try again soon; the validity still bounds how long we trust it.
                next_at = now() + min(1.0, self.info.ttl / 10)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._stop.set()
        try:
            self._release_call()
        finally:
            self._lose(LeaseLostError(f"the lease on {self.resource} was released", "released"))

    def _release_call(self) -> None:
        self._client.release(self.lock_id, self._client_id)

    def resign(self) -> None:
        """Gives up a leadership at once (the next candidate leads within milliseconds): the same as release()."""
        self.release()

    def __enter__(self) -> Lease:
        return self.start_renewing()

    def __exit__(self, *exc: object) -> None:
        try:
            self.release()
        except (LeaseLostError, NotFoundError):
            pass


class _Deferred:
    """What ``Client.lock`` returns: acquires on ``__enter__``."""

    def __init__(self, client: Client, resource: str, kwargs: dict[str, Any]) -> None:
        self._args = (client, resource, kwargs)
        self._lease: Lease | None = None

    def __enter__(self) -> Lease:
        client, resource, kwargs = self._args
        self._lease = client.acquire(resource, **kwargs)
        return self._lease.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self._lease is not None:
            self._lease.__exit__(*exc)


class Election:
    """Who leads ``name``, and the means to campaign for it (a lock on ``election:{name}``)."""

    def __init__(self, client: Client, name: str) -> None:
        self._client = client
        self.name = name
        self.resource = f"election:{name}"

    def campaign(self, candidate_id: str, *, ttl: float = 10.0, wait: float = float("inf")) -> Lease:
        """Waits to lead (FIFO among candidates), then renews; resign with ``release()``."""
        return self._client.acquire(self.resource, ttl=ttl, wait=wait, client_id=candidate_id).start_renewing()

    def leader(self) -> dict[str, Any] | None:
        """``{"candidateId", "fencingToken", "since", "expiresAt"}`` of the leader now, or ``None``."""
        holders = self._client.queue(self.resource).get("holders") or []
        if not holders:
            return None
        h = holders[0]
        return {"candidateId": h["clientId"], "fencingToken": h["fencingToken"], "since": h["acquiredAt"], "expiresAt": h["expiresAt"]}

    def observe(self, interval: float = 0.1) -> Iterator[dict[str, Any] | None]:
        """Yields the leader now, then every change of leader (a new term counts), looking every ``interval``."""
        last: object = object()
        while True:
            now_leader = self.leader()
            key = (now_leader or {}).get("fencingToken")
            if key != last:
                last = key
                yield now_leader
            time.sleep(interval)


class Group(GroupFields, Lease):
    """A held group, renewed, lost and released together (see ``GroupFields``). ``lost``, ``check()``,
    ``start_renewing()`` and the context manager work as on a lease."""

    def __init__(self, client: Client, data: dict[str, Any], sent: float, client_id: str) -> None:
        self._take(data, sent)
        super().__init__(client, self.info, client_id)

    def renew(self, ttl: float | None = None) -> None:
        sent = now()
        self._take((self._client._t.call("POST", "/api/groups/renew", self._renew_body(self._client_id, ttl)))["data"], sent)

    def _release_call(self) -> None:
        self._client._t.call("POST", "/api/groups/release", {"groupId": self.group_id, "clientId": self._client_id})
