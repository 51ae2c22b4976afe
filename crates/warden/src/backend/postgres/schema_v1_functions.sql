-- warden's PostgreSQL functions, schema version 1. `{p}` is the table prefix (default `warden_`).
-- Lease operations run inside {p}batch, many in one transaction. Times are microseconds since the Unix epoch on
-- the database server's clock. An acquire locks its resource's row, then writes a new lease row; a release or
-- renewal locks the lease's row, then its resource's row. A lease belongs to one resource, and a batch takes
-- resources in the order of a hash of their name (a lock id ends with its resource's), so two batches never
-- wait for each other in a circle (PostgreSQL would break one after deadlock_timeout if a hash collided).

CREATE OR REPLACE FUNCTION {p}now_us() RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
$$;

-- The waiters that may proceed now: the exclusive head of a free lock, or the run of shared waiters at the
-- head while no exclusive lease is held. Each is sent a notification on channel `{p}wake`. `r` is the
-- resource's row, locked by the caller.
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

-- Writes the lease row of a grant (`o` carries its fence and times). The lock id of an ended lease is granted
-- anew; that of a live one (a retried attempt) answers that lease, with the time it has left.
CREATE OR REPLACE FUNCTION {p}record_grant(
    o {p}reply, p_resource text, p_lock_id text, p_kind text, p_ttl_ms bigint, p_client text,
    p_max_renewals integer, p_max_hold_ms bigint
) RETURNS {p}reply LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {p}leases AS l (lock_id, resource, kind, client_id, acquired_us, expires_us, ttl_ms, fence,
                                max_renewals, max_hold_ms)
        VALUES (p_lock_id, p_resource, p_kind, p_client, o.now_us, o.expires_us, p_ttl_ms, o.fence,
                p_max_renewals, p_max_hold_ms)
        ON CONFLICT (lock_id) DO UPDATE SET resource = excluded.resource, kind = excluded.kind,
            client_id = excluded.client_id, acquired_us = excluded.acquired_us, expires_us = excluded.expires_us,
            ttl_ms = excluded.ttl_ms, fence = excluded.fence, renewals = 0, max_renewals = excluded.max_renewals,
            max_hold_ms = excluded.max_hold_ms
        WHERE l.expires_us <= excluded.acquired_us;
    IF NOT FOUND THEN
        SELECT fence, expires_us INTO o.fence, o.expires_us FROM {p}leases WHERE lock_id = p_lock_id;
        o.remaining_us := greatest(o.expires_us - o.now_us, 0);
    END IF;
    o.status := 'granted';
    RETURN o;
END
$$;

-- One acquire attempt. 'granted': fence, now_us, expires_us (remaining_us when the lease was found granted by
-- an earlier attempt). 'queued': retry_us, when the blocking lease ends (null if unknown); the waiter, if any,
-- is queued or its waiter lease refreshed. 'full': the queue is full.
CREATE OR REPLACE FUNCTION {p}acquire(
    p_resource text, p_lock_id text, p_kind text, p_ttl_ms bigint, p_client text, p_waiter text,
    p_waiter_lease_ms bigint, p_max_renewals integer, p_max_hold_ms bigint, p_max_waiters integer
) RETURNS {p}reply LANGUAGE plpgsql AS $$
DECLARE
    o {p}reply;
    r {p}resources;
    v_now bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    v_excl boolean := p_kind IN ('exclusive', 'write');
    v_allowed boolean := true;
    v_n integer := 0;
    v_queue_changed boolean := false;
    w record;
BEGIN
    o.now_us := v_now;
    o.expires_us := v_now + p_ttl_ms * 1000;
    -- The common case in one statement: a free resource with nobody queued.
    IF v_excl THEN
        UPDATE {p}resources SET fence = greatest(fence + 1, v_now), holder = p_lock_id, holder_until = o.expires_us
            WHERE resource = p_resource AND holder_until <= v_now AND shared_until <= v_now AND queued = 0
            RETURNING fence INTO o.fence;
    ELSE
        UPDATE {p}resources SET fence = greatest(fence + 1, v_now),
                shared_until = greatest(shared_until, o.expires_us)
            WHERE resource = p_resource AND holder_until <= v_now AND queued = 0
            RETURNING fence INTO o.fence;
    END IF;
    IF FOUND THEN
        RETURN {p}record_grant(o, p_resource, p_lock_id, p_kind, p_ttl_ms, p_client, p_max_renewals,
                               p_max_hold_ms);
    END IF;
    LOOP
        SELECT * INTO r FROM {p}resources WHERE resource = p_resource FOR UPDATE;
        EXIT WHEN FOUND;
        INSERT INTO {p}resources (resource) VALUES (p_resource) ON CONFLICT DO NOTHING;
    END LOOP;
    v_now := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    o.now_us := v_now;
    o.expires_us := v_now + p_ttl_ms * 1000;
    -- A retried attempt whose grant was made but not seen.
    IF r.holder = p_lock_id AND r.holder_until > v_now THEN
        o.status := 'granted';
        o.fence := r.fence;
        o.expires_us := r.holder_until;
        o.remaining_us := r.holder_until - v_now;
        IF p_waiter IS NOT NULL AND r.queued > 0 THEN
            DELETE FROM {p}waiters WHERE resource = p_resource AND waiter_id = p_waiter;
            GET DIAGNOSTICS v_n = ROW_COUNT;
            UPDATE {p}resources SET queued = queued - v_n WHERE resource = p_resource;
        END IF;
        RETURN o;
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
        o.fence := greatest(r.fence + 1, v_now);
        IF p_waiter IS NOT NULL AND r.queued > 0 THEN
            DELETE FROM {p}waiters WHERE resource = p_resource AND waiter_id = p_waiter;
            GET DIAGNOSTICS v_n = ROW_COUNT;
            r.queued := r.queued - v_n;
        END IF;
        IF v_excl THEN
            UPDATE {p}resources SET fence = o.fence, holder = p_lock_id, holder_until = o.expires_us,
                queued = r.queued WHERE resource = p_resource;
        ELSE
            UPDATE {p}resources SET fence = o.fence, shared_until = greatest(shared_until, o.expires_us),
                queued = r.queued WHERE resource = p_resource;
        END IF;
        RETURN {p}record_grant(o, p_resource, p_lock_id, p_kind, p_ttl_ms, p_client, p_max_renewals,
                               p_max_hold_ms);
    END IF;
    o.status := 'queued';
    o.expires_us := NULL;
    IF r.holder_until > v_now THEN
        o.retry_us := r.holder_until - v_now;
    ELSIF v_excl AND r.shared_until > v_now THEN
        SELECT min(expires_us) - v_now INTO o.retry_us FROM {p}leases
            WHERE resource = p_resource AND expires_us > v_now AND kind IN ('shared', 'read');
    END IF;
    IF p_waiter IS NOT NULL THEN
        UPDATE {p}waiters SET deadline_us = v_now + p_waiter_lease_ms * 1000
            WHERE resource = p_resource AND waiter_id = p_waiter;
        IF NOT FOUND THEN
            IF r.queued >= p_max_waiters THEN
                o.status := 'full';
                RETURN o;
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
    RETURN o;
END
$$;

-- Releases a lease: 'released' (held_us), 'lost' (it had expired), 'not_found' or 'not_owner'; resource names
-- the lease's resource when known. The lease leaves its resource's row, which wakes the waiters that may go.
CREATE OR REPLACE FUNCTION {p}release(p_lock_id text, p_client text) RETURNS {p}reply LANGUAGE plpgsql AS $$
DECLARE
    o {p}reply;
    l {p}leases;
    r {p}resources;
    v_now bigint;
BEGIN
    DELETE FROM {p}leases WHERE lock_id = p_lock_id AND (p_client IS NULL OR client_id = p_client)
        RETURNING * INTO l;
    IF NOT FOUND THEN
        SELECT resource INTO o.resource FROM {p}leases WHERE lock_id = p_lock_id;
        o.status := CASE WHEN FOUND THEN 'not_owner' ELSE 'not_found' END;
        RETURN o;
    END IF;
    o.resource := l.resource;
    v_now := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    IF l.expires_us <= v_now THEN
        o.status := 'lost';
    ELSE
        o.status := 'released';
        o.held_us := greatest(v_now - l.acquired_us, 0);
    END IF;
    UPDATE {p}resources SET
            holder = CASE WHEN holder = l.lock_id THEN NULL ELSE holder END,
            holder_until = CASE WHEN holder = l.lock_id THEN 0 ELSE holder_until END,
            released = released + (o.status = 'released')::integer,
            expired = expired + (o.status = 'lost')::integer,
            hold_ms = hold_ms + coalesce(o.held_us, l.expires_us - l.acquired_us) / 1000
        WHERE resource = l.resource RETURNING * INTO r;
    IF l.kind IN ('shared', 'read') AND r.shared_until > v_now THEN
        UPDATE {p}resources SET shared_until = coalesce((SELECT max(expires_us) FROM {p}leases
                WHERE resource = l.resource AND expires_us > v_now AND kind IN ('shared', 'read')), 0)
            WHERE resource = l.resource RETURNING * INTO r;
    END IF;
    IF r.queued > 0 THEN
        PERFORM {p}wake_eligible(r, v_now);
    END IF;
    RETURN o;
END
$$;

-- Extends a lease: 'renewed' (the lease's new state), 'capped' (expires_us unchanged), 'lost', 'not_found',
-- 'not_owner'. p_ttl_ms null: the lease's own ttl.
CREATE OR REPLACE FUNCTION {p}renew(p_lock_id text, p_ttl_ms bigint, p_client text)
RETURNS {p}reply LANGUAGE plpgsql AS $$
DECLARE
    o {p}reply;
    l {p}leases;
    v_new bigint;
    v_ttl bigint;
BEGIN
    SELECT * INTO l FROM {p}leases WHERE lock_id = p_lock_id FOR UPDATE;
    IF NOT FOUND THEN
        o.status := 'not_found';
        RETURN o;
    END IF;
    o.resource := l.resource;
    o.kind := l.kind;
    o.client := l.client_id;
    o.acquired_us := l.acquired_us;
    o.expires_us := l.expires_us;
    o.ttl_ms := l.ttl_ms;
    o.fence := l.fence;
    o.renewals := l.renewals;
    IF p_client IS NOT NULL AND l.client_id <> p_client THEN
        o.status := 'not_owner';
        RETURN o;
    END IF;
    o.now_us := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    IF l.expires_us <= o.now_us THEN
        o.status := 'lost';
        RETURN o;
    END IF;
    IF l.max_renewals IS NOT NULL AND l.renewals >= l.max_renewals THEN
        o.status := 'capped';
        RETURN o;
    END IF;
    v_ttl := coalesce(p_ttl_ms, l.ttl_ms);
    v_new := o.now_us + v_ttl * 1000;
    IF l.max_hold_ms IS NOT NULL THEN
        v_new := least(v_new, l.acquired_us + l.max_hold_ms * 1000);
        IF v_new <= o.now_us THEN
            o.status := 'capped';
            RETURN o;
        END IF;
    END IF;
    UPDATE {p}leases SET expires_us = v_new, ttl_ms = v_ttl, renewals = renewals + 1 WHERE lock_id = p_lock_id;
    IF l.kind IN ('exclusive', 'write') THEN
        UPDATE {p}resources SET holder_until = v_new WHERE resource = l.resource AND holder = p_lock_id;
    ELSE
        UPDATE {p}resources SET shared_until = greatest(shared_until, v_new) WHERE resource = l.resource;
    END IF;
    o.expires_us := v_new;
    o.ttl_ms := v_ttl;
    o.renewals := l.renewals + 1;
    o.status := 'renewed';
    RETURN o;
END
$$;

-- Several operations in one call and one transaction (the client's group commit: one round trip and one WAL
-- flush for all). p_op[i] is 'acquire', 'release' or 'renew'; the other arrays hold each operation's
-- arguments (null where unused). The client sends them in the order of their resource (by a hash that lock
-- ids carry, see the top of this file); each answers one row, o_i naming it.
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
    v {p}reply;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_op, 1), 0) LOOP
        IF p_op[i] = 'acquire' THEN
            v := {p}acquire(p_resource[i], p_lock_id[i], p_kind[i], p_ttl_ms[i], p_client[i], p_waiter[i],
                            p_waiter_lease_ms[i], p_max_renewals[i], p_max_hold_ms[i], p_max_waiters);
        ELSIF p_op[i] = 'release' THEN
            v := {p}release(p_lock_id[i], p_client[i]);
        ELSE
            v := {p}renew(p_lock_id[i], p_ttl_ms[i], p_client[i]);
        END IF;
        o_i := i;
        o_status := v.status;
        o_resource := v.resource;
        o_kind := v.kind;
        o_client := v.client;
        o_fence := v.fence;
        o_now_us := v.now_us;
        o_expires_us := v.expires_us;
        o_remaining_us := v.remaining_us;
        o_retry_us := v.retry_us;
        o_held_us := v.held_us;
        o_acquired_us := v.acquired_us;
        o_ttl_ms := v.ttl_ms;
        o_renewals := v.renewals;
        RETURN NEXT;
    END LOOP;
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
-- resources idle for as long (their counters move to {p}totals; a later grant re-seeds the fence from the
-- clock). Rows another operation holds now are skipped until the next sweep. Returns how many leases it forgot.
CREATE OR REPLACE FUNCTION {p}sweep(p_retain_us bigint) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_before bigint := {p}now_us() - p_retain_us;
    v_forgot integer := 0;
    v_n integer;
    l record;
    r record;
BEGIN
    FOR l IN SELECT lock_id, resource, acquired_us, expires_us FROM {p}leases WHERE expires_us < v_before
             LIMIT 1000 FOR UPDATE SKIP LOCKED LOOP
        UPDATE {p}resources SET expired = expired + 1, hold_ms = hold_ms + (l.expires_us - l.acquired_us) / 1000,
                holder = CASE WHEN holder = l.lock_id THEN NULL ELSE holder END,
                holder_until = CASE WHEN holder = l.lock_id THEN 0 ELSE holder_until END
            WHERE resource = l.resource;
        DELETE FROM {p}leases WHERE lock_id = l.lock_id;
        v_forgot := v_forgot + 1;
    END LOOP;
    FOR r IN SELECT DISTINCT resource FROM {p}waiters WHERE deadline_us < v_before LIMIT 1000 LOOP
        PERFORM 1 FROM {p}resources WHERE resource = r.resource FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        DELETE FROM {p}waiters WHERE resource = r.resource AND deadline_us < v_before;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        UPDATE {p}resources SET queued = queued - v_n WHERE resource = r.resource;
    END LOOP;
    FOR r IN SELECT * FROM {p}resources WHERE fence < v_before AND holder_until < v_before
               AND shared_until < v_before AND queued = 0 LIMIT 1000 FOR UPDATE SKIP LOCKED LOOP
        UPDATE {p}totals SET released = released + r.released, expired = expired + r.expired,
            hold_ms = hold_ms + r.hold_ms WHERE id = 1;
        DELETE FROM {p}resources WHERE resource = r.resource;
    END LOOP;
    RETURN v_forgot;
END
$$;
