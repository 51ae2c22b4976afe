"""The asyncio client: the same API with ``await`` and ``async with``; renewal runs as a task.

HTTP goes through the standard library in worker threads of the client's own, one kept-alive connection per
thread, so the package needs nothing beyond Python itself. Waiting acquires have threads apart from every other
call, so a renewal never queues behind a long wait.
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
from concurrent.futures import ThreadPoolExecutor
from collections.abc import AsyncIterator
from typing import Any

from ._common import GroupFields, LeaseInfo, acquire_body, group_body, now, path_body, quoted
from ._transport import Transport
from .errors import LeaseLostError, LockTimeoutError, NotFoundError, NotOwnerError, WardenError


class AsyncClient:
    """The asyncio twin of :class:`warden_client.Client`."""

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
        self._quick = ThreadPoolExecutor(max_workers=8, thread_name_prefix="warden-call")
        self._waits = ThreadPoolExecutor(max_workers=256, thread_name_prefix="warden-wait")

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None, wait: float = 0.0) -> dict[str, Any]:
        pool = self._waits if wait > 0 else self._quick
        call = functools.partial(self._t.call, method, path, body, wait)
        return await asyncio.get_running_loop().run_in_executor(pool, call)

    async def acquire(
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
    ) -> AsyncLease:
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
                data = (await self._call("POST", "/api/locks/acquire", body, body["waitTimeout"] / 1000))["data"]
                return AsyncLease(self, LeaseInfo.from_wire(data, sent), who)
            except LockTimeoutError:
                if left <= 600:
                    raise
                left -= 600

    def lock(self, resource: str, **kwargs: Any) -> _DeferredAsync:
        """``async with client.lock("orders:42", ttl=10) as lease:`` acquires, renews while inside, releases on exit."""
        return _DeferredAsync(self, resource, kwargs)

    async def acquire_group(
        self,
        members: list[str | dict[str, Any]],
        *,
        ttl: float = 30.0,
        wait: float = 5.0,
        client_id: str | None = None,
        max_renewals: int | None = None,
        max_hold: float | None = None,
    ) -> AsyncGroup:
        """Acquires every member or none (names, or ``{"resource", "mode"?, "permits"?}``), waiting up to ``wait``
        seconds (at most 600) for the whole group. Members are taken in one global order, so groups never deadlock;
        a ``LockTimeoutError`` names the member still held, and nothing is then held."""
        who = client_id or self.client_id
        body = group_body(members, ttl, wait, who, max_renewals, max_hold)
        sent = now()
        data = (await self._call("POST", "/api/groups/acquire", body, body["waitTimeout"] / 1000))["data"]
        return AsyncGroup(self, data, sent, who)

    async def acquire_path(
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
    ) -> AsyncGroup:
        """Locks a path in a tree (``orders/eu/42``): it excludes locks on anything below and above it, never its
        siblings. It is a group (an intention on each ancestor, then the path); ``fencing_tokens[path]`` is the token
        to pass on."""
        who = client_id or self.client_id
        body = path_body(path, shared, separator, ttl, wait, who, max_renewals, max_hold)
        sent = now()
        data = (await self._call("POST", "/api/paths/acquire", body, body["waitTimeout"] / 1000))["data"]
        return AsyncGroup(self, data, sent, who)

    async def release(self, lock_id: str, client_id: str | None = None) -> None:
        await self._call("POST", "/api/locks/release", {"lockId": lock_id, "clientId": client_id or self.client_id})

    async def renew(self, lock_id: str, ttl: float | None = None, client_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"lockId": lock_id, "clientId": client_id or self.client_id}
        if ttl is not None:
            body["ttl"] = round(ttl * 1000)
        return (await self._call("POST", "/api/locks/renew", body))["data"]

    async def status(self, lock_id: str) -> dict[str, Any]:
        return (await self._call("GET", f"/api/locks/{quoted(lock_id)}/status"))["data"]

    async def held(self, client_id: str | None = None) -> list[dict[str, Any]]:
        return (await self._call("GET", f"/api/locks/held?clientId={quoted(client_id or self.client_id)}"))["data"]

    async def queue(self, resource: str) -> dict[str, Any]:
        return (await self._call("GET", f"/api/locks/queue?resource={quoted(resource)}"))["data"]

    async def stats(self) -> dict[str, Any]:
        return (await self._call("GET", "/api/locks/stats"))["data"]

    async def analytics(self, top: int = 10, by: str = "grants") -> dict[str, Any]:
        """As ``Client.analytics``."""
        return (await self._call("GET", f"/api/locks/analytics?top={int(top)}&by={quoted(by)}"))["data"]

    def election(self, name: str) -> AsyncElection:
        return AsyncElection(self, name)


class AsyncLease:
    """A held lease; ``lost`` is an ``asyncio.Event`` set the moment it can no longer be trusted."""

    def __init__(self, client: AsyncClient, info: LeaseInfo, client_id: str) -> None:
        self._client = client
        self._client_id = client_id
        self.info = info
        self.lost = asyncio.Event()
        self.lost_reason: WardenError | None = None
        self._task: asyncio.Task[None] | None = None
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

    async def renew(self, ttl: float | None = None) -> None:
        sent = now()
        data = await self._client.renew(self.lock_id, ttl, self._client_id)
        self.info = LeaseInfo.from_wire(data, sent, self.lock_id)

    def start_renewing(self) -> AsyncLease:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._renew_loop())
        return self

    async def _renew_loop(self) -> None:
        next_at = now() + self.info.ttl / 3
        while not self.lost.is_set():
            await asyncio.sleep(max(0.0, min(next_at, self.info.valid_until) - now()))
            if now() >= self.info.valid_until:
                self._lose(LeaseLostError(f"the lease on {self.resource} ran out before a renewal was confirmed", "lease_lost"))
                return
            if now() < next_at:
                continue
            try:
                # Bounded by the validity: a renewal that cannot answer in time is a lost lease.
                await asyncio.wait_for(self.renew(), timeout=max(0.001, self.info.valid_until - now()))
                next_at = now() + self.info.ttl / 3
            except (LeaseLostError, NotFoundError, NotOwnerError) as e:
                self._lose(e)
                return
            except (WardenError, asyncio.TimeoutError):
                next_at = now() + min(1.0, self.info.ttl / 10)

    async def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._task is not None:
            self._task.cancel()
        try:
            await self._release_call()
        finally:
            self._lose(LeaseLostError(f"the lease on {self.resource} was released", "released"))

    async def _release_call(self) -> None:
        await self._client.release(self.lock_id, self._client_id)

    async def resign(self) -> None:
        """Gives up a leadership at once (the next candidate leads within milliseconds): the same as release()."""
        await self.release()

    async def __aenter__(self) -> AsyncLease:
        return self.start_renewing()

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.release()
        except (LeaseLostError, NotFoundError):
            pass


class _DeferredAsync:
    def __init__(self, client: AsyncClient, resource: str, kwargs: dict[str, Any]) -> None:
        self._args = (client, resource, kwargs)
        self._lease: AsyncLease | None = None

    async def __aenter__(self) -> AsyncLease:
        client, resource, kwargs = self._args
        self._lease = await client.acquire(resource, **kwargs)
        return await self._lease.__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        if self._lease is not None:
            await self._lease.__aexit__(*exc)


class AsyncElection:
    def __init__(self, client: AsyncClient, name: str) -> None:
        self._client = client
        self.name = name
        self.resource = f"election:{name}"

    async def campaign(self, candidate_id: str, *, ttl: float = 10.0, wait: float = float("inf")) -> AsyncLease:
        lease = await self._client.acquire(self.resource, ttl=ttl, wait=wait, client_id=candidate_id)
        return lease.start_renewing()

    async def leader(self) -> dict[str, Any] | None:
        holders = (await self._client.queue(self.resource)).get("holders") or []
        if not holders:
            return None
        h = holders[0]
        return {"candidateId": h["clientId"], "fencingToken": h["fencingToken"], "since": h["acquiredAt"], "expiresAt": h["expiresAt"]}

    async def observe(self, interval: float = 0.1) -> AsyncIterator[dict[str, Any] | None]:
        last: object = object()
        while True:
            leader = await self.leader()
            key = (leader or {}).get("fencingToken")
            if key != last:
                last = key
                yield leader
            await asyncio.sleep(interval)


class AsyncGroup(GroupFields, AsyncLease):
    """A held group, renewed, lost and released together (see ``GroupFields``). ``lost``, ``check()``,
    ``start_renewing()`` and the context manager work as on a lease."""

    def __init__(self, client: AsyncClient, data: dict[str, Any], sent: float, client_id: str) -> None:
        self._take(data, sent)
        super().__init__(client, self.info, client_id)

    async def renew(self, ttl: float | None = None) -> None:
        sent = now()
        self._take((await self._client._call("POST", "/api/groups/renew", self._renew_body(self._client_id, ttl)))["data"], sent)

    async def _release_call(self) -> None:
        await self._client._call("POST", "/api/groups/release", {"groupId": self.group_id, "clientId": self._client_id})
