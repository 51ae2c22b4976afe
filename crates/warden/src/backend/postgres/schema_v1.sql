-- warden's PostgreSQL schema, version 1. `{p}` is the table prefix (default `warden_`).
-- Times are microseconds since the Unix epoch on the database server's clock: every process agrees on them.
-- Each operation is one function call (one round trip, one transaction). An operation on a resource first locks
-- its row in {p}resources: that row serialises everything done to the resource, and is the only lock taken
-- before a lease row, so operations cannot deadlock.

CREATE TABLE IF NOT EXISTS {p}resources (
    resource text PRIMARY KEY,
    -- The last fencing token granted; the next is greatest(fence + 1, now): it grows even after a restore.
    fence bigint NOT NULL DEFAULT 0,
    grants bigint NOT NULL DEFAULT 0,
    released bigint NOT NULL DEFAULT 0,
    expired bigint NOT NULL DEFAULT 0,
    hold_ms bigint NOT NULL DEFAULT 0
);

-- A lease is held while expires_us > now. An expired row stays (renew and release report the loss) until the
-- sweep removes it a retention period later.
CREATE TABLE IF NOT EXISTS {p}leases (
    lock_id text PRIMARY KEY,
    resource text NOT NULL,
    kind text NOT NULL,
    client_id text NOT NULL,
    acquired_us bigint NOT NULL,
    expires_us bigint NOT NULL,
    ttl_ms bigint NOT NULL,
    fence bigint NOT NULL,
    renewals integer NOT NULL DEFAULT 0,
    max_renewals integer,
    max_hold_ms bigint
);
CREATE INDEX IF NOT EXISTS {p}leases_resource ON {p}leases (resource, expires_us);
CREATE INDEX IF NOT EXISTS {p}leases_client ON {p}leases (client_id);

-- FIFO queues: a waiter stays while its deadline (its waiter lease, refreshed by each attempt) is ahead.
CREATE TABLE IF NOT EXISTS {p}waiters (
    resource text NOT NULL,
    waiter_id text NOT NULL,
    seq bigserial,
    client_id text NOT NULL,
    kind text NOT NULL,
    ttl_ms bigint NOT NULL,
    deadline_us bigint NOT NULL,
    PRIMARY KEY (resource, waiter_id)
);
CREATE INDEX IF NOT EXISTS {p}waiters_order ON {p}waiters (resource, seq);

-- Counters of resources the sweep forgot (idle, past their fence): statistics stay cumulative.
CREATE TABLE IF NOT EXISTS {p}totals (
    id integer PRIMARY KEY CHECK (id = 1),
    grants bigint NOT NULL DEFAULT 0,
    released bigint NOT NULL DEFAULT 0,
    expired bigint NOT NULL DEFAULT 0,
    hold_ms bigint NOT NULL DEFAULT 0
);
INSERT INTO {p}totals (id) VALUES (1) ON CONFLICT DO NOTHING;

CREATE OR REPLACE FUNCTION {p}now_us() RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
$$;

-- Locks the resource's row, creating it if needed (the sweep may delete an idle row between the two steps).
CREATE OR REPLACE FUNCTION {p}lock_resource(p_resource text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_fence bigint;
BEGIN
    LOOP
        SELECT fence INTO v_fence FROM {p}resources WHERE resource = p_resource FOR UPDATE;
        IF FOUND THEN
            RETURN v_fence;
        END IF;
        INSERT INTO {p}resources (resource) VALUES (p_resource) ON CONFLICT DO NOTHING;
    END LOOP;
END
$$;

-- The waiters that may proceed now: the exclusive head of a free lock, or the run of shared waiters at the
-- head while no exclusive lease is held. Each is sent a notification on channel `{p}wake`.
CREATE OR REPLACE FUNCTION {p}wake_eligible(p_resource text, p_now bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_head record;
    v_ids text := '';
    w record;
BEGIN
    SELECT waiter_id, kind INTO v_head FROM {p}waiters
        WHERE resource = p_resource AND deadline_us >= p_now ORDER BY seq LIMIT 1;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF v_head.kind IN ('exclusive', 'write') THEN
        IF NOT EXISTS (SELECT 1 FROM {p}leases WHERE resource = p_resource AND expires_us > p_now) THEN
            PERFORM pg_notify('{p}wake', v_head.waiter_id);
        END IF;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM {p}leases WHERE resource = p_resource AND expires_us > p_now
               AND kind IN ('exclusive', 'write')) THEN
        RETURN;
    END IF;
    FOR w IN SELECT waiter_id, kind FROM {p}waiters
             WHERE resource = p_resource AND deadline_us >= p_now ORDER BY seq LIMIT 1000 LOOP
        EXIT WHEN w.kind IN ('exclusive', 'write');
        IF length(v_ids) > 7000 THEN
            PERFORM pg_notify('{p}wake', v_ids);
            v_ids := '';
        END IF;
        v_ids := CASE WHEN v_ids = '' THEN w.waiter_id ELSE v_ids || ' ' || w.waiter_id END;
    END LOOP;
    IF v_ids <> '' THEN
        PERFORM pg_notify('{p}wake', v_ids);
    END IF;
END
$$;

-- One acquire attempt. Granted: o_granted, o_fence, o_now_us, o_expires_us (o_remaining_us when the lease was
-- found granted by an earlier attempt). Not granted: o_retry_us, when the blocking lease ends (null if unknown);
-- the waiter, if any, is queued or its waiter lease refreshed. o_status 'full' when the queue is full.
CREATE OR REPLACE FUNCTION {p}acquire(
    p_resource text, p_lock_id text, p_kind text, p_ttl_ms bigint, p_client text, p_waiter text,
    p_waiter_lease_ms bigint, p_max_renewals integer, p_max_hold_ms bigint, p_max_waiters integer,
    OUT o_status text, OUT o_fence bigint, OUT o_now_us bigint, OUT o_expires_us bigint,
    OUT o_remaining_us bigint, OUT o_retry_us bigint
) LANGUAGE plpgsql AS $$
DECLARE
    v_now bigint;
    v_fence bigint;
    v_excl boolean := p_kind IN ('exclusive', 'write');
    v_allowed boolean := true;
    v_blocked_until bigint;
    v_cleaned integer := 0;
    v_lease record;
    w record;
BEGIN
    v_fence := {p}lock_resource(p_resource);
    v_now := {p}now_us();
    o_now_us := v_now;
    -- A retried attempt whose grant was made but not seen.
    SELECT fence, expires_us INTO v_lease FROM {p}leases WHERE lock_id = p_lock_id AND resource = p_resource;
    IF FOUND AND v_lease.expires_us > v_now THEN
        o_status := 'granted';
        o_fence := v_lease.fence;
        o_expires_us := v_lease.expires_us;
        o_remaining_us := v_lease.expires_us - v_now;
        DELETE FROM {p}waiters WHERE resource = p_resource AND waiter_id = p_waiter;
        RETURN;
    END IF;
    -- FIFO: a dead waiter leaves; then only the head (or a shared waiter ahead of every live exclusive one) may go.
    IF EXISTS (SELECT 1 FROM {p}waiters WHERE resource = p_resource) THEN
        DELETE FROM {p}waiters WHERE resource = p_resource AND deadline_us < v_now;
        GET DIAGNOSTICS v_cleaned = ROW_COUNT;
        FOR w IN SELECT waiter_id, kind FROM {p}waiters WHERE resource = p_resource ORDER BY seq LOOP
            IF w.waiter_id = p_waiter THEN
                EXIT;
            END IF;
            IF v_excl OR w.kind IN ('exclusive', 'write') THEN
                v_allowed := false;
                EXIT;
            END IF;
        END LOOP;
    END IF;
    -- Compatibility with the live holders; when blocked by them, when the first blocking lease ends.
    SELECT min(expires_us) INTO v_blocked_until FROM {p}leases
        WHERE resource = p_resource AND expires_us > v_now AND (v_excl OR kind IN ('exclusive', 'write'));
    IF v_allowed AND v_blocked_until IS NULL THEN
        o_fence := greatest(v_fence + 1, v_now);
        o_expires_us := v_now + p_ttl_ms * 1000;
        UPDATE {p}resources SET fence = o_fence, grants = grants + 1 WHERE resource = p_resource;
        DELETE FROM {p}leases WHERE lock_id = p_lock_id;
        INSERT INTO {p}leases (lock_id, resource, kind, client_id, acquired_us, expires_us, ttl_ms, fence,
                               max_renewals, max_hold_ms)
            VALUES (p_lock_id, p_resource, p_kind, p_client, v_now, o_expires_us, p_ttl_ms, o_fence,
                    p_max_renewals, p_max_hold_ms);
        IF p_waiter IS NOT NULL THEN
            DELETE FROM {p}waiters WHERE resource = p_resource AND waiter_id = p_waiter;
        END IF;
        o_status := 'granted';
        RETURN;
    END IF;
    o_status := 'queued';
    o_retry_us := v_blocked_until - v_now;
    IF p_waiter IS NOT NULL THEN
        UPDATE {p}waiters SET deadline_us = v_now + p_waiter_lease_ms * 1000
            WHERE resource = p_resource AND waiter_id = p_waiter;
        IF NOT FOUND THEN
            IF (SELECT count(*) FROM {p}waiters WHERE resource = p_resource) >= p_max_waiters THEN
                o_status := 'full';
                RETURN;
            END IF;
            INSERT INTO {p}waiters (resource, waiter_id, client_id, kind, ttl_ms, deadline_us)
                VALUES (p_resource, p_waiter, p_client, p_kind, p_ttl_ms, v_now + p_waiter_lease_ms * 1000);
        END IF;
    END IF;
    IF v_cleaned > 0 THEN
        PERFORM {p}wake_eligible(p_resource, v_now);
    END IF;
END
$$;

-- Releases a lease: 'released' (o_held_us), 'lost' (it had expired), 'not_found' or 'not_owner'.
CREATE OR REPLACE FUNCTION {p}release(
    p_lock_id text, p_client text, OUT o_status text, OUT o_held_us bigint, OUT o_resource text
) LANGUAGE plpgsql AS $$
DECLARE
    v_lease record;
    v_now bigint;
BEGIN
    SELECT resource, client_id INTO v_lease FROM {p}leases WHERE lock_id = p_lock_id;
    IF NOT FOUND THEN
        o_status := 'not_found';
        RETURN;
    END IF;
    o_resource := v_lease.resource;
    IF p_client IS NOT NULL AND v_lease.client_id <> p_client THEN
        o_status := 'not_owner';
        RETURN;
    END IF;
    PERFORM {p}lock_resource(v_lease.resource);
    DELETE FROM {p}leases WHERE lock_id = p_lock_id RETURNING acquired_us, expires_us INTO v_lease;
    IF NOT FOUND THEN
        o_status := 'not_found';
        RETURN;
    END IF;
    v_now := {p}now_us();
    IF v_lease.expires_us <= v_now THEN
        UPDATE {p}resources SET expired = expired + 1,
            hold_ms = hold_ms + (v_lease.expires_us - v_lease.acquired_us) / 1000 WHERE resource = o_resource;
        o_status := 'lost';
        RETURN;
    END IF;
    o_held_us := greatest(v_now - v_lease.acquired_us, 0);
    UPDATE {p}resources SET released = released + 1, hold_ms = hold_ms + o_held_us / 1000
        WHERE resource = o_resource;
    IF EXISTS (SELECT 1 FROM {p}waiters WHERE resource = o_resource) THEN
        PERFORM {p}wake_eligible(o_resource, v_now);
    END IF;
    o_status := 'released';
END
$$;

-- Extends a lease: 'renewed' (the lease's new state), 'capped' (o_expires_us unchanged), 'lost', 'not_found',
-- 'not_owner'. p_ttl_ms null: the lease's own ttl.
CREATE OR REPLACE FUNCTION {p}renew(
    p_lock_id text, p_ttl_ms bigint, p_client text,
    OUT o_status text, OUT o_resource text, OUT o_kind text, OUT o_client text, OUT o_acquired_us bigint,
    OUT o_expires_us bigint, OUT o_ttl_ms bigint, OUT o_fence bigint, OUT o_renewals integer, OUT o_now_us bigint
) LANGUAGE plpgsql AS $$
DECLARE
    l record;
    v_new bigint;
    v_ttl bigint;
BEGIN
    SELECT * INTO l FROM {p}leases WHERE lock_id = p_lock_id FOR UPDATE;
    IF NOT FOUND THEN
        o_status := 'not_found';
        RETURN;
    END IF;
    o_resource := l.resource;
    o_kind := l.kind;
    o_client := l.client_id;
    o_acquired_us := l.acquired_us;
    o_expires_us := l.expires_us;
    o_ttl_ms := l.ttl_ms;
    o_fence := l.fence;
    o_renewals := l.renewals;
    IF p_client IS NOT NULL AND l.client_id <> p_client THEN
        o_status := 'not_owner';
        RETURN;
    END IF;
    o_now_us := {p}now_us();
    IF l.expires_us <= o_now_us THEN
        o_status := 'lost';
        RETURN;
    END IF;
    IF l.max_renewals IS NOT NULL AND l.renewals >= l.max_renewals THEN
        o_status := 'capped';
        RETURN;
    END IF;
    v_ttl := coalesce(p_ttl_ms, l.ttl_ms);
    v_new := o_now_us + v_ttl * 1000;
    IF l.max_hold_ms IS NOT NULL THEN
        v_new := least(v_new, l.acquired_us + l.max_hold_ms * 1000);
        IF v_new <= o_now_us THEN
            o_status := 'capped';
            RETURN;
        END IF;
    END IF;
    UPDATE {p}leases SET expires_us = v_new, ttl_ms = v_ttl, renewals = renewals + 1 WHERE lock_id = p_lock_id;
    o_expires_us := v_new;
    o_ttl_ms := v_ttl;
    o_renewals := l.renewals + 1;
    o_status := 'renewed';
END
$$;

-- Leaves a queue and wakes whoever may proceed because of it.
CREATE OR REPLACE FUNCTION {p}leave(p_resource text, p_waiter text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_now bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM {p}waiters WHERE resource = p_resource AND waiter_id = p_waiter) THEN
        RETURN;
    END IF;
    PERFORM {p}lock_resource(p_resource);
    v_now := {p}now_us();
    DELETE FROM {p}waiters WHERE resource = p_resource AND (waiter_id = p_waiter OR deadline_us < v_now);
    PERFORM {p}wake_eligible(p_resource, v_now);
END
$$;

-- Housekeeping: forgets leases expired longer than p_retain_us ago (counted as expired), dead waiters, and
-- idle resources whose fence the clock has passed (their counters move to {p}totals). Resources another
-- operation holds now are skipped until the next sweep. Returns how many leases it forgot.
CREATE OR REPLACE FUNCTION {p}sweep(p_retain_us bigint) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_now bigint := {p}now_us();
    v_forgot integer := 0;
    v_n integer;
    v_hold bigint;
    r record;
BEGIN
    FOR r IN SELECT DISTINCT resource FROM {p}leases WHERE expires_us < v_now - p_retain_us LIMIT 1000 LOOP
        PERFORM 1 FROM {p}resources WHERE resource = r.resource FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        WITH gone AS (
            DELETE FROM {p}leases WHERE resource = r.resource AND expires_us < v_now - p_retain_us
            RETURNING expires_us - acquired_us AS held
        ) SELECT count(*), coalesce(sum(held), 0) INTO v_n, v_hold FROM gone;
        UPDATE {p}resources SET expired = expired + v_n, hold_ms = hold_ms + v_hold / 1000
            WHERE resource = r.resource;
        v_forgot := v_forgot + v_n;
    END LOOP;
    DELETE FROM {p}waiters WHERE deadline_us < v_now - p_retain_us;
    FOR r IN SELECT * FROM {p}resources WHERE fence < v_now - p_retain_us LIMIT 1000 FOR UPDATE SKIP LOCKED LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM {p}leases WHERE resource = r.resource)
                   OR EXISTS (SELECT 1 FROM {p}waiters WHERE resource = r.resource);
        UPDATE {p}totals SET grants = grants + r.grants, released = released + r.released,
            expired = expired + r.expired, hold_ms = hold_ms + r.hold_ms WHERE id = 1;
        DELETE FROM {p}resources WHERE resource = r.resource;
    END LOOP;
    RETURN v_forgot;
END
$$;
