-- warden's PostgreSQL schema, version 1. `{p}` is the table prefix (default `warden_`).
-- Times are microseconds since the Unix epoch on the database server's clock: every process agrees on them.
-- Each operation is one function call (one round trip, one transaction). An operation on a resource first locks
-- its row in {p}resources: that row serialises everything done to the resource, and is the only lock taken
-- before a lease row, so operations cannot deadlock.

CREATE TABLE IF NOT EXISTS {p}resources (
    resource text PRIMARY KEY,
    -- The last fencing token granted; the next is greatest(fence + 1, now): it grows even after a restore.
    fence bigint NOT NULL DEFAULT 0,
    -- Who holds it, kept on the row every operation locks anyway, so the common path reads no other table:
    -- the exclusive holder's lock id and expiry, the latest expiry among shared holders, the queue's length.
    holder text,
    holder_until bigint NOT NULL DEFAULT 0,
    shared_until bigint NOT NULL DEFAULT 0,
    queued integer NOT NULL DEFAULT 0,
    -- Counters of ended leases (grants = ended + live).
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
    released bigint NOT NULL DEFAULT 0,
    expired bigint NOT NULL DEFAULT 0,
    hold_ms bigint NOT NULL DEFAULT 0
);
INSERT INTO {p}totals (id) VALUES (1) ON CONFLICT DO NOTHING;

CREATE OR REPLACE FUNCTION {p}now_us() RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
$$;

-- The waiters that may proceed now: the exclusive head of a free lock, or the run of shared waiters at the
-- head while no exclusive lease is held. Each is sent a notification on channel `{p}wake`. The caller holds
-- the resource's row, `r`.
CREATE OR REPLACE FUNCTION {p}wake_eligible(r {p}resources, p_now bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_ids text := '';
    w record;
BEGIN
    IF r.holder_until > p_now THEN
        RETURN;
    END IF;
    FOR w IN SELECT waiter_id, kind FROM {p}waiters
             WHERE resource = r.resource AND deadline_us >= p_now ORDER BY seq LIMIT 1000 LOOP
        IF w.kind IN ('exclusive', 'write') THEN
            IF v_ids = '' AND r.shared_until <= p_now THEN
                v_ids := w.waiter_id;
            END IF;
            EXIT;
        END IF;
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

-- One acquire attempt. o_status 'granted': o_fence, o_now_us, o_expires_us (o_remaining_us when the lease was
-- found granted by an earlier attempt). 'queued': o_retry_us, when the blocking lease ends (null if unknown);
-- the waiter, if any, is queued or its waiter lease refreshed. 'full': the queue is full.
CREATE OR REPLACE FUNCTION {p}acquire(
    p_resource text, p_lock_id text, p_kind text, p_ttl_ms bigint, p_client text, p_waiter text,
    p_waiter_lease_ms bigint, p_max_renewals integer, p_max_hold_ms bigint, p_max_waiters integer,
    OUT o_status text, OUT o_fence bigint, OUT o_now_us bigint, OUT o_expires_us bigint,
    OUT o_remaining_us bigint, OUT o_retry_us bigint
) LANGUAGE plpgsql AS $$
DECLARE
    r {p}resources;
    v_now bigint;
    v_excl boolean := p_kind IN ('exclusive', 'write');
    v_allowed boolean := true;
    v_n integer := 0;
    v_queue_changed boolean := false;
    w record;
BEGIN
    LOOP
        SELECT * INTO r FROM {p}resources WHERE resource = p_resource FOR UPDATE;
        EXIT WHEN FOUND;
        INSERT INTO {p}resources (resource) VALUES (p_resource) ON CONFLICT DO NOTHING;
    END LOOP;
    v_now := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    o_now_us := v_now;
    -- A retried attempt whose grant was made but not seen.
    IF r.holder = p_lock_id AND r.holder_until > v_now THEN
        o_status := 'granted';
        o_fence := r.fence;
        o_expires_us := r.holder_until;
        o_remaining_us := r.holder_until - v_now;
        IF p_waiter IS NOT NULL AND r.queued > 0 THEN
            DELETE FROM {p}waiters WHERE resource = p_resource AND waiter_id = p_waiter;
            GET DIAGNOSTICS v_n = ROW_COUNT;
            UPDATE {p}resources SET queued = queued - v_n WHERE resource = p_resource;
        END IF;
        RETURN;
    END IF;
    -- FIFO: dead waiters leave; then only the head (or a shared waiter ahead of every live exclusive one) may go.
    IF r.queued > 0 THEN
        DELETE FROM {p}waiters WHERE resource = p_resource AND deadline_us < v_now;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        r.queued := r.queued - v_n;
        v_queue_changed := v_n > 0;
        FOR w IN SELECT waiter_id, kind FROM {p}waiters WHERE resource = p_resource ORDER BY seq LOOP
            EXIT WHEN w.waiter_id = p_waiter;
            IF v_excl OR w.kind IN ('exclusive', 'write') THEN
                v_allowed := false;
                EXIT;
            END IF;
        END LOOP;
    END IF;
    IF v_allowed AND r.holder_until <= v_now AND (NOT v_excl OR r.shared_until <= v_now) THEN
        o_fence := greatest(r.fence + 1, v_now);
        o_expires_us := v_now + p_ttl_ms * 1000;
        INSERT INTO {p}leases (lock_id, resource, kind, client_id, acquired_us, expires_us, ttl_ms, fence,
                               max_renewals, max_hold_ms)
            VALUES (p_lock_id, p_resource, p_kind, p_client, v_now, o_expires_us, p_ttl_ms, o_fence,
                    p_max_renewals, p_max_hold_ms)
            ON CONFLICT (lock_id) DO NOTHING;
        IF NOT FOUND THEN
            -- This lock id already names a lease (a retried shared attempt, or an expired lease).
            SELECT fence, expires_us INTO o_fence, o_expires_us FROM {p}leases WHERE lock_id = p_lock_id;
            IF o_expires_us > v_now THEN
                o_status := 'granted';
                o_remaining_us := o_expires_us - v_now;
                RETURN;
            END IF;
            o_status := 'reused';
            RETURN;
        END IF;
        IF p_waiter IS NOT NULL AND r.queued > 0 THEN
            DELETE FROM {p}waiters WHERE resource = p_resource AND waiter_id = p_waiter;
            GET DIAGNOSTICS v_n = ROW_COUNT;
            r.queued := r.queued - v_n;
        END IF;
        IF v_excl THEN
            UPDATE {p}resources SET fence = o_fence, holder = p_lock_id, holder_until = o_expires_us,
                queued = r.queued WHERE resource = p_resource;
        ELSE
            UPDATE {p}resources SET fence = o_fence, shared_until = greatest(shared_until, o_expires_us),
                queued = r.queued WHERE resource = p_resource;
        END IF;
        o_status := 'granted';
        RETURN;
    END IF;
    o_status := 'queued';
    IF r.holder_until > v_now THEN
        o_retry_us := r.holder_until - v_now;
    ELSIF v_excl AND r.shared_until > v_now THEN
        SELECT min(expires_us) - v_now INTO o_retry_us FROM {p}leases
            WHERE resource = p_resource AND expires_us > v_now AND kind IN ('shared', 'read');
    END IF;
    IF p_waiter IS NOT NULL THEN
        UPDATE {p}waiters SET deadline_us = v_now + p_waiter_lease_ms * 1000
            WHERE resource = p_resource AND waiter_id = p_waiter;
        IF NOT FOUND THEN
            IF r.queued >= p_max_waiters THEN
                o_status := 'full';
                RETURN;
            END IF;
            INSERT INTO {p}waiters (resource, waiter_id, client_id, kind, ttl_ms, deadline_us)
                VALUES (p_resource, p_waiter, p_client, p_kind, p_ttl_ms, v_now + p_waiter_lease_ms * 1000);
            r.queued := r.queued + 1;
            v_queue_changed := true;
        END IF;
    END IF;
    IF v_queue_changed THEN
        UPDATE {p}resources SET queued = r.queued WHERE resource = p_resource;
    END IF;
    IF v_n > 0 THEN
        PERFORM {p}wake_eligible(r, v_now);
    END IF;
END
$$;

-- Takes lease `l` (just deleted or expired) off its resource's row `r` (locked by the caller), counting it as
-- released or expired, and wakes the waiters that may proceed.
CREATE OR REPLACE FUNCTION {p}drop_holder(r {p}resources, l {p}leases, p_now bigint, p_released boolean)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF r.holder = l.lock_id THEN
        r.holder := NULL;
        r.holder_until := 0;
    ELSIF l.kind IN ('shared', 'read') THEN
        SELECT coalesce(max(expires_us), 0) INTO r.shared_until FROM {p}leases
            WHERE resource = r.resource AND expires_us > p_now AND kind IN ('shared', 'read')
              AND lock_id <> l.lock_id;
    END IF;
    IF p_released THEN
        r.released := r.released + 1;
        r.hold_ms := r.hold_ms + greatest(p_now - l.acquired_us, 0) / 1000;
    ELSE
        r.expired := r.expired + 1;
        r.hold_ms := r.hold_ms + (l.expires_us - l.acquired_us) / 1000;
    END IF;
    UPDATE {p}resources SET holder = r.holder, holder_until = r.holder_until, shared_until = r.shared_until,
        released = r.released, expired = r.expired, hold_ms = r.hold_ms WHERE resource = r.resource;
    IF r.queued > 0 THEN
        PERFORM {p}wake_eligible(r, p_now);
    END IF;
END
$$;

-- Releases a lease: 'released' (o_held_us), 'lost' (it had expired), 'not_found' or 'not_owner'.
CREATE OR REPLACE FUNCTION {p}release(
    p_lock_id text, p_client text, OUT o_status text, OUT o_held_us bigint, OUT o_resource text
) LANGUAGE plpgsql AS $$
DECLARE
    l {p}leases;
    r {p}resources;
    v_now bigint;
BEGIN
    SELECT resource, client_id INTO o_resource, l.client_id FROM {p}leases WHERE lock_id = p_lock_id;
    IF NOT FOUND THEN
        o_status := 'not_found';
        RETURN;
    END IF;
    IF p_client IS NOT NULL AND l.client_id <> p_client THEN
        o_status := 'not_owner';
        RETURN;
    END IF;
    SELECT * INTO r FROM {p}resources WHERE resource = o_resource FOR UPDATE;
    DELETE FROM {p}leases WHERE lock_id = p_lock_id RETURNING * INTO l;
    IF NOT FOUND THEN
        o_status := 'not_found';
        RETURN;
    END IF;
    v_now := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    IF l.expires_us <= v_now THEN
        IF r.resource IS NOT NULL THEN
            PERFORM {p}drop_holder(r, l, v_now, false);
        END IF;
        o_status := 'lost';
        RETURN;
    END IF;
    o_held_us := greatest(v_now - l.acquired_us, 0);
    IF r.resource IS NOT NULL THEN
        PERFORM {p}drop_holder(r, l, v_now, true);
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
    l {p}leases;
    v_new bigint;
    v_ttl bigint;
BEGIN
    SELECT resource INTO o_resource FROM {p}leases WHERE lock_id = p_lock_id;
    IF NOT FOUND THEN
        o_status := 'not_found';
        RETURN;
    END IF;
    PERFORM 1 FROM {p}resources WHERE resource = o_resource FOR UPDATE;
    SELECT * INTO l FROM {p}leases WHERE lock_id = p_lock_id;
    IF NOT FOUND THEN
        o_status := 'not_found';
        RETURN;
    END IF;
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
    o_now_us := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
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
    IF l.kind IN ('exclusive', 'write') THEN
        UPDATE {p}resources SET holder_until = v_new WHERE resource = o_resource AND holder = p_lock_id;
    ELSE
        UPDATE {p}resources SET shared_until = greatest(shared_until, v_new) WHERE resource = o_resource;
    END IF;
    o_expires_us := v_new;
    o_ttl_ms := v_ttl;
    o_renewals := l.renewals + 1;
    o_status := 'renewed';
END
$$;

-- Leaves a queue and wakes whoever may proceed because of it.
CREATE OR REPLACE FUNCTION {p}leave(p_resource text, p_waiter text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r {p}resources;
    v_now bigint;
    v_n integer;
BEGIN
    SELECT * INTO r FROM {p}resources WHERE resource = p_resource FOR UPDATE;
    IF NOT FOUND OR r.queued = 0 THEN
        RETURN;
    END IF;
    v_now := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    DELETE FROM {p}waiters WHERE resource = p_resource AND (waiter_id = p_waiter OR deadline_us < v_now);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    r.queued := r.queued - v_n;
    UPDATE {p}resources SET queued = r.queued WHERE resource = p_resource;
    PERFORM {p}wake_eligible(r, v_now);
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
            DELETE FROM {p}leases WHERE lock_id IN (
                SELECT lock_id FROM {p}leases WHERE resource = r.resource AND expires_us < v_now - p_retain_us
                FOR UPDATE SKIP LOCKED)
            RETURNING expires_us - acquired_us AS held
        ) SELECT count(*), coalesce(sum(held), 0) INTO v_n, v_hold FROM gone;
        UPDATE {p}resources SET expired = expired + v_n, hold_ms = hold_ms + v_hold / 1000
            WHERE resource = r.resource;
        v_forgot := v_forgot + v_n;
    END LOOP;
    FOR r IN SELECT DISTINCT resource FROM {p}waiters WHERE deadline_us < v_now - p_retain_us LIMIT 1000 LOOP
        PERFORM 1 FROM {p}resources WHERE resource = r.resource FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        DELETE FROM {p}waiters WHERE resource = r.resource AND deadline_us < v_now - p_retain_us;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        UPDATE {p}resources SET queued = queued - v_n WHERE resource = r.resource;
    END LOOP;
    FOR r IN SELECT * FROM {p}resources WHERE fence < v_now - p_retain_us AND holder_until < v_now
               AND shared_until < v_now AND queued = 0 LIMIT 1000 FOR UPDATE SKIP LOCKED LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM {p}leases WHERE resource = r.resource);
        UPDATE {p}totals SET released = released + r.released, expired = expired + r.expired,
            hold_ms = hold_ms + r.hold_ms WHERE id = 1;
        DELETE FROM {p}resources WHERE resource = r.resource;
    END LOOP;
    RETURN v_forgot;
END
$$;

-- Several operations in one call and one transaction (the client's group commit: one round trip and one WAL
-- flush for all). p_op[i] is 'acquire', 'release' or 'renew'; the other arrays hold each operation's
-- arguments (null where unused). Operations run in the order of their resource, so two concurrent batches lock
-- resource rows in the same order and cannot deadlock; each answers one row, o_i naming it.
CREATE OR REPLACE FUNCTION {p}batch(
    p_op text[], p_resource text[], p_lock_id text[], p_kind text[], p_ttl_ms bigint[], p_client text[],
    p_waiter text[], p_waiter_lease_ms bigint[], p_max_renewals integer[], p_max_hold_ms bigint[],
    p_max_waiters integer
) RETURNS TABLE (
    o_i integer, o_status text, o_resource text, o_kind text, o_client text, o_fence bigint, o_now_us bigint,
    o_expires_us bigint, o_remaining_us bigint, o_retry_us bigint, o_held_us bigint, o_acquired_us bigint,
    o_ttl_ms bigint, o_renewals integer
) LANGUAGE plpgsql AS $$
DECLARE
    v_keys text[] := p_resource;
    i integer;
    a record;
    rl record;
    rn record;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_op, 1), 0) LOOP
        IF p_op[i] <> 'acquire' THEN
            v_keys[i] := (SELECT resource FROM {p}leases WHERE lock_id = p_lock_id[i]);
        END IF;
    END LOOP;
    FOR i IN SELECT u.idx FROM unnest(v_keys) WITH ORDINALITY AS u(key, idx) ORDER BY u.key, u.idx LOOP
        o_i := i;
        o_status := NULL; o_resource := NULL; o_kind := NULL; o_client := NULL; o_fence := NULL;
        o_now_us := NULL; o_expires_us := NULL; o_remaining_us := NULL; o_retry_us := NULL; o_held_us := NULL;
        o_acquired_us := NULL; o_ttl_ms := NULL; o_renewals := NULL;
        IF p_op[i] = 'acquire' THEN
            SELECT * INTO a FROM {p}acquire(p_resource[i], p_lock_id[i], p_kind[i], p_ttl_ms[i], p_client[i],
                p_waiter[i], p_waiter_lease_ms[i], p_max_renewals[i], p_max_hold_ms[i], p_max_waiters);
            o_status := a.o_status; o_fence := a.o_fence; o_now_us := a.o_now_us; o_expires_us := a.o_expires_us;
            o_remaining_us := a.o_remaining_us; o_retry_us := a.o_retry_us;
        ELSIF p_op[i] = 'release' THEN
            SELECT * INTO rl FROM {p}release(p_lock_id[i], p_client[i]);
            o_status := rl.o_status; o_held_us := rl.o_held_us; o_resource := rl.o_resource;
        ELSE
            SELECT * INTO rn FROM {p}renew(p_lock_id[i], p_ttl_ms[i], p_client[i]);
            o_status := rn.o_status; o_resource := rn.o_resource; o_kind := rn.o_kind; o_client := rn.o_client;
            o_acquired_us := rn.o_acquired_us; o_expires_us := rn.o_expires_us; o_ttl_ms := rn.o_ttl_ms;
            o_fence := rn.o_fence; o_renewals := rn.o_renewals; o_now_us := rn.o_now_us;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
