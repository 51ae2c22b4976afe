"""The asyncio client against a real `warden serve`: exclusion across ten tasks, the lost event on revoke and on
expiry, typed errors, and an election."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import pytest
from conftest import auth_file, keygen

import warden_client as w


def test_ten_tasks_keep_a_counter_exact(server):
    async def main() -> None:
        state = {"n": 0, "inside": False}
        fences: list[int] = []

        async def worker(i: int) -> None:
            client = w.AsyncClient(server.url, client_id=f"task-{i}")
            for _ in range(5):
                async with client.lock("counter", ttl=5, wait=30) as lease:
                    assert not state["inside"], "two holders inside the critical section"
                    state["inside"] = True
                    fences.append(lease.fencing_token)
                    v = state["n"]
                    await asyncio.sleep(0.001)
                    state["n"] = v + 1
                    lease.check()
                    state["inside"] = False

        await asyncio.gather(*(worker(i) for i in range(10)))
        assert state["n"] == 50
        assert fences == sorted(fences)
        [top] = (await w.AsyncClient(server.url).analytics(top=1, by="contention"))["resources"]
        assert (top["resource"], top["grants"], top["holdMs"]["count"]) == ("counter", 50, 50), top

    asyncio.run(main())


def test_lost_is_set_on_revoke_and_on_expiry(serve):
    admin, admin_entry = keygen("root", "admin")
    app, app_entry = keygen("app", "client", ["jobs:*"])
    s = serve("--backend", "memory://", "--auth-file", auth_file([admin_entry, app_entry]))

    async def main() -> None:
        client = w.AsyncClient(s.url, token=app)
        async with client.lock("jobs:1", ttl=0.6) as lease:
            req = urllib.request.Request(
                f"{s.url}/api/locks/force-release",
                data=json.dumps({"resource": "jobs:1", "reason": "test"}).encode(),
                headers={"authorization": f"Bearer {admin}", "content-type": "application/json"},
            )
            assert (await asyncio.to_thread(urllib.request.urlopen, req)).status == 200
            await asyncio.wait_for(lease.lost.wait(), 2)
            assert isinstance(lease.lost_reason, (w.LeaseLostError, w.NotFoundError))
            with pytest.raises(w.LeaseLostError):
                lease.check()
        gone = w.AsyncClient(s.url, token=app, timeout=0.2)
        lease = (await gone.acquire("jobs:2", ttl=0.5)).start_renewing()
        s.stop()
        await asyncio.wait_for(lease.lost.wait(), 2)
        assert isinstance(lease.lost_reason, w.LeaseLostError), lease.lost_reason
        assert time.monotonic() <= lease.info.valid_until + 0.25

    asyncio.run(main())


def test_typed_errors_and_an_election(server):
    async def main() -> None:
        c = w.AsyncClient(server.url, client_id="errors")
        held = await c.acquire("busy", ttl=30)
        with pytest.raises(w.LockTimeoutError) as e:
            await c.acquire("busy", wait=0)
        assert e.value.code == "lock_timeout" and e.value.status == 409
        with pytest.raises(w.NotOwnerError):
            await c.release(held.lock_id, "someone-else")
        await held.release()
        with pytest.raises(w.ConditionFailedError) as e:
            await c.acquire("busy", if_fencing_token=held.fencing_token - 1)
        assert e.value.code == "condition_failed" and e.value.status == 412
        await (await c.acquire("busy", if_fencing_token=held.fencing_token)).release()

        election = c.election("consumer")
        first = await election.campaign("c1", ttl=5)
        second = asyncio.create_task(election.campaign("c2", ttl=5))
        while (await c.queue("election:consumer"))["waitingClients"] != 1:
            await asyncio.sleep(0.005)
        resigned = time.monotonic()
        await first.resign()
        lead = await asyncio.wait_for(second, 5)
        assert time.monotonic() - resigned < 0.5
        assert lead.fencing_token > first.fencing_token
        assert (await election.leader())["candidateId"] == "c2"
        await lead.release()

    asyncio.run(main())


def test_a_group_is_granted_whole_or_not_at_all(server):
    async def main() -> None:
        a = w.AsyncClient(server.url, client_id="agroup-a")
        b = w.AsyncClient(server.url, client_id="agroup-b")
        async with await a.acquire_group(["astock", {"resource": "arates", "mode": "shared"}]) as g:
            assert [m.resource for m in g.locks] == ["arates", "astock"]
            with pytest.raises(w.LockTimeoutError):
                await b.acquire_group(["aorders", "astock"], wait=0)
            await (await b.acquire("aorders", wait=0)).release()
            await g.renew(60)
            assert all(m.ttl == 60 for m in g.locks)
            first = g.fencing_tokens["astock"]
        assert g.lost.is_set()
        again = await b.acquire_group(["astock", "aorders"], wait=0)
        assert again.fencing_tokens["astock"] > first
        await again.release()

    asyncio.run(main())


def test_a_path_lock_excludes_below_and_above(server):
    async def main() -> None:
        a = w.AsyncClient(server.url, client_id="apath-a")
        b = w.AsyncClient(server.url, client_id="apath-b")
        async with await a.acquire_path("ashop/eu") as eu:
            assert [m.resource for m in eu.locks] == ["ashop", "ashop/eu"]
            with pytest.raises(w.LockTimeoutError):
                await b.acquire_path("ashop/eu/1", wait=0)
            await (await b.acquire_path("ashop/us/1", wait=0)).release()
        await (await b.acquire_path("ashop/eu/1", shared=True, wait=0)).release()

    asyncio.run(main())
