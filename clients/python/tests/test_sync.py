"""The sync client against a real `warden serve`: exclusion, the lost signal on revoke and on expiry, typed errors
for the API's codes, elections, and every endpoint it calls present in /openapi.json."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest
from conftest import auth_file, keygen

import warden_client as w


def test_ten_threads_keep_a_counter_exact_with_fences_in_turn(server):
    counter = {"n": 0, "inside": False}
    fences: list[int] = []
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        client = w.Client(server.url, client_id=f"worker-{i}")
        try:
            for _ in range(5):
                with client.lock("counter", ttl=5, wait=30) as lease:
                    assert not counter["inside"], "two holders inside the critical section"
                    counter["inside"] = True
                    fences.append(lease.fencing_token)
                    v = counter["n"]
                    time.sleep(0.001)
                    counter["n"] = v + 1
                    lease.check()
                    counter["inside"] = False
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert counter["n"] == 50
    assert fences == sorted(fences), "fences did not increase in grant order"
    [top] = w.Client(server.url).analytics(top=1, by="contention")["resources"]
    assert (top["resource"], top["grants"], top["holdMs"]["count"]) == ("counter", 50, 50), top
    assert top["waited"] > 0 and top["waitMs"]["count"] == top["waited"], top


def test_lost_is_set_when_the_server_revokes_the_lease(serve):
    admin, admin_entry = keygen("root", "admin")
    app, app_entry = keygen("app", "client", ["jobs:*"])
    s = serve("--backend", "memory://", "--auth-file", auth_file([admin_entry, app_entry]))
    client = w.Client(s.url, token=app)
    started = time.monotonic()
    with client.lock("jobs:1", ttl=0.6) as lease:
        req = urllib.request.Request(
            f"{s.url}/api/locks/force-release",
            data=json.dumps({"resource": "jobs:1", "reason": "test"}).encode(),
            headers={"authorization": f"Bearer {admin}", "content-type": "application/json"},
        )
        assert urllib.request.urlopen(req).status == 200
        assert lease.lost.wait(2), "lost was never set"
        assert isinstance(lease.lost_reason, (w.LeaseLostError, w.NotFoundError)), lease.lost_reason
        assert time.monotonic() - started < 0.6
        with pytest.raises(w.LeaseLostError):
            lease.check()


def test_lost_is_set_by_the_end_of_the_validity_when_the_server_is_gone(serve):
    s = serve("--backend", "memory://")
    client = w.Client(s.url, timeout=0.2)
    lease = client.acquire("gone", ttl=0.5).start_renewing()
    s.stop()
    assert lease.lost.wait(2)
    assert isinstance(lease.lost_reason, w.LeaseLostError), lease.lost_reason
    # By the end of its validity (plus this thread's wake-up delay).
    assert time.monotonic() <= lease.info.valid_until + 0.25


def test_every_api_error_is_a_typed_error_with_its_code(serve, server):
    def raises(cls, code, fn, *args, **kwargs):
        with pytest.raises(cls) as e:
            fn(*args, **kwargs)
        assert isinstance(e.value, w.WardenError) and e.value.code == code, e.value

    c = w.Client(server.url, client_id="errors")
    raises(w.InvalidRequestError, "invalid_request", c.acquire, "", wait=0)
    raises(w.NotFoundError, "not_found", c.release, "0123456789abcdef0123456789abcdef")
    held = c.acquire("busy", ttl=30)
    raises(w.LockTimeoutError, "lock_timeout", c.acquire, "busy", wait=0)
    raises(w.NotOwnerError, "not_owner", c.release, held.lock_id, "someone-else")
    held.release()
    capped = c.acquire("capped", ttl=30, max_renewals=0)
    raises(w.RenewalCappedError, "renewal_capped", capped.renew)
    capped.release()
    # A semaphore: two of two permits, then a third waits; other permits, or a lock, on it conflict.
    pool = [c.acquire("pool", permits=2), c.acquire("pool", permits=2)]
    assert pool[0].info.type == "semaphore" and pool[1].fencing_token > pool[0].fencing_token
    raises(w.LockTimeoutError, "lock_timeout", c.acquire, "pool", permits=2, wait=0)
    raises(w.ConflictError, "conflict", c.acquire, "pool", permits=3, wait=0)
    raises(w.ConflictError, "conflict", c.acquire, "pool", wait=0)
    raises(w.InvalidRequestError, "invalid_request", c.acquire, "pool", permits=0)
    for p in pool:
        p.release()
    # Conditions: a resumed run only if nobody held the resource since its token; a run at most once a minute.
    first = c.acquire("job", if_not_granted_within=60)
    first.release()
    raises(w.ConditionFailedError, "condition_failed", c.acquire, "job", if_not_granted_within=60)
    c.acquire("job", if_fencing_token=first.fencing_token).release()
    raises(w.ConditionFailedError, "condition_failed", c.acquire, "job", if_fencing_token=first.fencing_token)
    raises(w.InvalidRequestError, "invalid_request", c.acquire, "job", if_fencing_token=0)
    raises(w.InvalidRequestError, "invalid_request", c.acquire, "job", if_fencing_token=1, if_not_granted_within=1)
    raises(w.InvalidRequestError, "invalid_request", c.acquire, "job", priority=101)
    raises(w.UnreachableError, "unreachable", w.Client("http://127.0.0.1:1").stats)

    app, entry = keygen("app", "client", ["a:*"])
    s = serve("--backend", "memory://", "--auth-file", auth_file([entry]), "--rate-limit", "1", "--rate-burst", "1")
    raises(w.UnauthorizedError, "unauthorized", w.Client(s.url).stats)
    authed = w.Client(s.url, token=app)
    raises(w.ForbiddenError, "forbidden", authed.acquire, "b:1", wait=0)
    limited = None
    for _ in range(20):
        try:
            authed.queue("a:1")
        except w.RateLimitedError as e:
            limited = e
            break
    assert limited is not None and limited.code == "rate_limited"

    few = serve("--backend", "memory://", "--max-waiters-per-resource", "1")
    front = serve("--backend", few.url)
    fc = w.Client(few.url)
    h = fc.acquire("full", ttl=30)
    parked = threading.Thread(target=lambda: w.Client(few.url).acquire("full", wait=20).release())
    parked.start()
    deadline = time.monotonic() + 5
    while fc.queue("full")["waitingClients"] != 1:
        assert time.monotonic() < deadline, "the waiter never queued"
        time.sleep(0.005)
    raises(w.TooManyWaitersError, "too_many_waiters", fc.acquire, "full", wait=20)
    h.release()
    parked.join()
    few.stop()
    raises(w.BackendUnavailableError, "backend_unavailable", w.Client(front.url).acquire, "x", wait=0)

    closing = serve("--backend", "memory://")
    cc = w.Client(closing.url)
    cc.acquire("closing", ttl=30)
    got: list[BaseException] = []

    def wait_then_record() -> None:
        try:
            w.Client(closing.url).acquire("closing", wait=20)
        except BaseException as e:  # noqa: BLE001 - checked below
            got.append(e)

    t = threading.Thread(target=wait_then_record)
    t.start()
    deadline = time.monotonic() + 5
    while cc.queue("closing")["waitingClients"] != 1:
        assert time.monotonic() < deadline, "the waiter never queued"
        time.sleep(0.005)
    closing.stop("term")
    t.join()
    assert got and isinstance(got[0], w.ShuttingDownError) and got[0].code == "shutting_down", got


def test_a_later_higher_priority_waiter_is_granted_first(server):
    c = w.Client(server.url)
    holder = c.acquire("prio")
    granted: list[tuple[int, str]] = []

    def wait(client_id: str, priority: int) -> None:
        lease = c.acquire("prio", wait=10, client_id=client_id, priority=priority)
        granted.append((lease.fencing_token, client_id))
        lease.release()

    threads = []
    for n, (client_id, priority) in enumerate([("plain", 0), ("urgent", 20)]):
        threads.append(threading.Thread(target=wait, args=(client_id, priority)))
        threads[-1].start()
        deadline = time.monotonic() + 5
        while c.queue("prio")["waitingClients"] != n + 1 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert c.queue("prio")["queue"][0]["clientId"] == "urgent"
    holder.release()
    for t in threads:
        t.join()
    assert [name for _, name in sorted(granted)] == ["urgent", "plain"]


def test_an_election_hands_over_on_resign_and_observe_sees_it(server):
    client = w.Client(server.url)
    election = client.election("consumer")
    first = election.campaign("c1", ttl=5)
    result: dict[str, w.Lease] = {}
    t = threading.Thread(target=lambda: result.update(lead=election.campaign("c2", ttl=5)))
    t.start()
    deadline = time.monotonic() + 5
    while client.queue("election:consumer")["waitingClients"] != 1:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    observed = election.observe(interval=0.02)
    assert next(observed)["candidateId"] == "c1"
    resigned = time.monotonic()
    first.resign()
    t.join(5)
    assert time.monotonic() - resigned < 0.5, "handover was slow"
    lead = result["lead"]
    assert lead.fencing_token > first.fencing_token
    assert next(observed)["candidateId"] == "c2"
    assert election.leader()["candidateId"] == "c2"
    lead.release()


def test_every_endpoint_and_field_the_client_uses_is_in_the_openapi_document(server):
    doc = json.load(urllib.request.urlopen(f"{server.url}/openapi.json"))
    for method, path in w.ENDPOINTS:
        assert method in doc["paths"].get(path, {}), f"{method} {path} is not in /openapi.json"
    acquire = doc["components"]["schemas"]["AcquireBody"]["properties"]
    for field in ["resource", "type", "mode", "ttl", "waitTimeout", "clientId", "maxRenewals", "maxHold"]:
        assert field in acquire, f"acquire field {field} is not in /openapi.json"
    for field in ["lockId", "clientId", "ttl"]:
        assert field in doc["components"]["schemas"]["RenewBody"]["properties"]
    for field in ["lockId", "clientId"]:
        assert field in doc["components"]["schemas"]["ReleaseBody"]["properties"]
    # Every code the server can answer has its class (the tests above trigger all but the two a client cannot
    # cause: a body too slow to arrive, and an internal failure).
    from warden_client.errors import BY_CODE

    for code in doc["components"]["schemas"]["ErrorCode"]["enum"]:
        if code != "unknown":
            assert code in BY_CODE and issubclass(BY_CODE[code], w.WardenError), code


def test_https_with_a_private_ca(serve, tmp_path):
    import ssl
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    s = serve("--backend", "memory://", "--tls-cert", str(cert), "--tls-key", str(key))
    assert s.url.startswith("https://")
    client = w.Client(s.url, ssl_context=ssl.create_default_context(cafile=str(cert)))
    with client.lock("tls", ttl=1) as lease:
        assert lease.fencing_token > 0
    # Without the CA the server is not trusted: an UnreachableError, not a silent success.
    with pytest.raises(w.UnreachableError):
        w.Client(s.url).stats()


def test_the_readme_quick_start_works_verbatim(server):
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parents[1]
    code = re.search(r"```python\n(.*?)```", (here / "README.md").read_text(), re.S).group(1)
    env = {**os.environ, "WARDEN_URL": server.url, "PYTHONPATH": str(here)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert re.search(r"holding orders:42 with fencing token \d+", out.stdout), out


def test_a_group_is_granted_whole_or_not_at_all(server):
    a = w.Client(server.url, client_id="group-a")
    b = w.Client(server.url, client_id="group-b")
    with a.acquire_group(["stock", {"resource": "rates", "mode": "shared"}, {"resource": "slots", "permits": 2}]) as g:
        assert [m.resource for m in g.locks] == ["rates", "slots", "stock"]
        assert g.fencing_tokens["stock"] > 0 and len(g.group_id.split(".")) == 3
        with pytest.raises(w.LockTimeoutError):
            b.acquire_group(["orders", "stock"], wait=0)
        b.acquire("orders", wait=0).release()  # the refused group kept nothing
        g.renew(60)
        assert all(m.ttl == 60 for m in g.locks)
        with pytest.raises(w.InvalidRequestError):
            _ = g.fencing_token
        first = g.fencing_tokens["stock"]
    assert g.lost.is_set()
    again = b.acquire_group(["stock", "orders"], wait=0)
    assert again.fencing_tokens["stock"] > first
    again.release()
    with pytest.raises(w.InvalidRequestError):
        a.acquire_group(["x", "x"])


def test_a_path_lock_excludes_below_and_above_never_siblings(server):
    a = w.Client(server.url, client_id="path-a")
    b = w.Client(server.url, client_id="path-b")
    with a.acquire_path("shop/eu") as eu:
        assert [m.resource for m in eu.locks] == ["shop", "shop/eu"]
        assert eu.fencing_tokens["shop/eu"] > 0
        for held in ["shop/eu/42", "shop"]:
            with pytest.raises(w.LockTimeoutError):
                b.acquire_path(held, wait=0)
        with pytest.raises(w.LockTimeoutError):
            b.acquire_path("shop/eu/42", shared=True, wait=0)
        b.acquire_path("shop/us/7", wait=0).release()
    b.acquire_path("shop:eu:42", separator=":", wait=0).release()
    b.acquire_path("shop/eu/42", wait=0).release()
    with pytest.raises(w.InvalidRequestError):
        a.acquire_path("shop//eu")
    with pytest.raises(w.InvalidRequestError):
        a.acquire_path("shop", separator="::")
