-- warden's PostgreSQL functions, schema version 1. `{p}` is the table prefix (default `warden_`).
-- Lease operations run inside {p}batch, many in one transaction. Times are microseconds since the Unix epoch on
-- the database server's clock. An exclusive lease lives on its resource's row; a shared one in {p}leases. An
-- acquire locks the resource's row (then writes a shared lease's row); a release or renewal of a shared lease
-- locks its row, then the resource's. A lease belongs to one resource, and a batch takes resources in the order
-- of a hash of their name (lock ids end with their resource's), so two batches never wait for each other in a
-- circle (PostgreSQL would break one after deadlock_timeout if two hashes collided).

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

-- Hands the lock over in the caller's transaction (a release's): to the exclusive head of a free lock, or to the
-- run of shared waiters at the head while no exclusive lease is held; dead waiters on the way leave. Each is
-- told on channel `{p}wake` as 'waiter_id:fence:acquired_ms:expires_ms', and after an exclusive handover the
-- next in line as 'waiter_id@ms' (when that lease ends), so nobody needs a round trip of its own. A handed
-- lease lasts min(ttl, waiter lease): a waiter that died while queued blocks the lock no longer than it would
-- have blocked the queue; a live one claims its ttl with its first renewal. `r` is the resource's row, locked.
-- Returns everything it told (the releasing process delivers it to its own waiters at once).
CREATE OR REPLACE FUNCTION {p}hand_over(r {p}resources, p_now bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_msg text := '';
    v_told text := '';
    v_item text;
    v_gone integer := 0;
    v_head {p}waiters;
    o {p}reply;
    w record;
BEGIN
    IF r.holder_until > p_now THEN
        RETURN NULL;
    END IF;
    o.now_us := p_now;
    FOR w IN SELECT * FROM {p}waiters WHERE resource = r.resource ORDER BY seq LIMIT 1000 LOOP
        IF w.deadline_us < p_now THEN
            DELETE FROM {p}waiters WHERE resource = r.resource AND waiter_id = w.waiter_id;
            v_gone := v_gone + 1;
            CONTINUE;
        END IF;
        IF v_head.waiter_id IS NOT NULL THEN
            -- The next in line after an exclusive handover: when that lease ends.
            v_msg := ' ' || w.waiter_id || '@' || least(v_head.ttl_ms, v_head.waiter_lease_ms);
            EXIT;
        END IF;
        o.expires_us := p_now + least(w.ttl_ms, w.waiter_lease_ms) * 1000;
        IF w.kind IN ('exclusive', 'write') THEN
            EXIT WHEN v_msg <> '' OR r.shared_until > p_now;
            IF w.lock_id IS NULL THEN
                v_msg := w.waiter_id;
                EXIT;
            END IF;
            v_head := w;
            DELETE FROM {p}waiters WHERE resource = r.resource AND waiter_id = w.waiter_id;
            v_gone := v_gone + 1;
            CONTINUE;
        END IF;
        v_item := w.waiter_id;
        IF w.lock_id IS NOT NULL THEN
            UPDATE {p}resources SET fence = greatest(fence + 1, p_now),
                    shared_until = greatest(shared_until, o.expires_us)
                WHERE resource = r.resource RETURNING fence INTO o.fence;
            o := {p}grant_shared(o, r.resource, w.lock_id, w.kind, w.ttl_ms, w.client_id, w.max_renewals,
                                 w.max_hold_ms);
            DELETE FROM {p}waiters WHERE resource = r.resource AND waiter_id = w.waiter_id;
            v_gone := v_gone + 1;
            v_item := v_item || ':' || o.fence || ':' || p_now / 1000 || ':' || o.expires_us / 1000;
        END IF;
        IF length(v_msg) > 7000 THEN
            PERFORM pg_notify('{p}wake', v_msg);
            v_told := v_told || ' ' || v_msg;
            v_msg := '';
        END IF;
        v_msg := CASE WHEN v_msg = '' THEN v_item ELSE v_msg || ' ' || v_item END;
    END LOOP;
    IF v_head.waiter_id IS NOT NULL THEN
        o.expires_us := p_now + least(v_head.ttl_ms, v_head.waiter_lease_ms) * 1000;
        UPDATE {p}resources SET fence = greatest(fence + 1, p_now), holder_fence = greatest(fence + 1, p_now),
                queued = queued - v_gone,
                expired = expired + (holder IS NOT NULL)::integer,
                hold_ms = hold_ms + coalesce((holder_until - holder_acquired) / 1000, 0),
                holder = v_head.lock_id, holder_kind = v_head.kind, holder_client = v_head.client_id,
                holder_acquired = p_now, holder_until = o.expires_us, holder_ttl_ms = v_head.ttl_ms,
                holder_renewals = 0, holder_max_renewals = v_head.max_renewals,
                holder_max_hold_ms = v_head.max_hold_ms
            WHERE resource = r.resource RETURNING fence INTO o.fence;
        v_msg := v_head.waiter_id || ':' || o.fence || ':' || p_now / 1000 || ':' || o.expires_us / 1000 || v_msg;
    ELSIF v_gone > 0 THEN
        UPDATE {p}resources SET queued = queued - v_gone WHERE resource = r.resource;
    END IF;
    IF v_msg <> '' THEN
        PERFORM pg_notify('{p}wake', v_msg);
    END IF;
    RETURN nullif(ltrim(v_told || ' ' || v_msg), '');
END
$$;

-- Writes the row of a shared grant (`o` carries its fence and times). The lock id of an ended lease is granted
-- anew; that of a live one (a retried attempt) answers that lease, with the time it has left.
CREATE OR REPLACE FUNCTION {p}grant_shared(
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
    p_resource text, p_hash integer, p_lock_id text, p_kind text, p_ttl_ms bigint, p_client text,
    p_waiter text, p_waiter_lease_ms bigint, p_max_renewals integer, p_max_hold_ms bigint, p_max_waiters integer
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
    -- The common case in one statement: a free resource with nobody queued. An ended lease still on the row is
    -- counted as expired as it is replaced.
    IF v_excl THEN
        UPDATE {p}resources SET fence = greatest(fence + 1, v_now), holder_fence = greatest(fence + 1, v_now),
                expired = expired + (holder IS NOT NULL)::integer,
                hold_ms = hold_ms + coalesce((holder_until - holder_acquired) / 1000, 0),
                holder = p_lock_id, holder_kind = p_kind, holder_client = p_client, holder_acquired = v_now,
                holder_until = o.expires_us, holder_ttl_ms = p_ttl_ms, holder_renewals = 0,
                holder_max_renewals = p_max_renewals, holder_max_hold_ms = p_max_hold_ms
            WHERE resource = p_resource AND holder_until <= v_now AND shared_until <= v_now AND queued = 0
            RETURNING fence INTO o.fence;
        IF FOUND THEN
            o.status := 'granted';
            RETURN o;
        END IF;
    ELSE
        UPDATE {p}resources SET fence = greatest(fence + 1, v_now),
                shared_until = greatest(shared_until, o.expires_us)
            WHERE resource = p_resource AND holder_until <= v_now AND queued = 0
            RETURNING fence INTO o.fence;
        IF FOUND THEN
            RETURN {p}grant_shared(o, p_resource, p_lock_id, p_kind, p_ttl_ms, p_client, p_max_renewals,
                                   p_max_hold_ms);
        END IF;
    END IF;
    LOOP
        SELECT * INTO r FROM {p}resources WHERE resource = p_resource FOR UPDATE;
        EXIT WHEN FOUND;
        INSERT INTO {p}resources (resource, key_hash) VALUES (p_resource, p_hash) ON CONFLICT DO NOTHING;
    END LOOP;
    v_now := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    o.now_us := v_now;
    o.expires_us := v_now + p_ttl_ms * 1000;
    -- A retried attempt whose grant was made but not seen.
    IF r.holder = p_lock_id AND r.holder_until > v_now THEN
        o.status := 'granted';
        o.fence := r.holder_fence;
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
            UPDATE {p}resources SET fence = o.fence, holder_fence = o.fence, queued = r.queued,
                    expired = expired + (holder IS NOT NULL)::integer,
                    hold_ms = hold_ms + coalesce((holder_until - holder_acquired) / 1000, 0),
                    holder = p_lock_id, holder_kind = p_kind, holder_client = p_client, holder_acquired = v_now,
                    holder_until = o.expires_us, holder_ttl_ms = p_ttl_ms, holder_renewals = 0,
                    holder_max_renewals = p_max_renewals, holder_max_hold_ms = p_max_hold_ms
                WHERE resource = p_resource;
            o.status := 'granted';
            RETURN o;
        END IF;
        UPDATE {p}resources SET fence = o.fence, shared_until = greatest(shared_until, o.expires_us),
            queued = r.queued WHERE resource = p_resource;
        RETURN {p}grant_shared(o, p_resource, p_lock_id, p_kind, p_ttl_ms, p_client, p_max_renewals,
                               p_max_hold_ms);
    END IF;
    o.status := 'queued';
    o.expires_us := NULL;
    IF r.holder_until > v_now THEN
        o.retry_us := r.holder_until - v_now;
    ELSIF v_excl AND r.shared_until > v_now THEN
        SELECT min(expires_us) - v_now INTO o.retry_us FROM {p}leases
            WHERE resource = p_resource AND expires_us > v_now;
    END IF;
    IF p_waiter IS NOT NULL THEN
        UPDATE {p}waiters SET deadline_us = v_now + p_waiter_lease_ms * 1000
            WHERE resource = p_resource AND waiter_id = p_waiter;
        IF NOT FOUND THEN
            IF r.queued >= p_max_waiters THEN
                o.status := 'full';
                RETURN o;
            END IF;
            INSERT INTO {p}waiters (resource, waiter_id, client_id, kind, ttl_ms, deadline_us, lock_id,
                                    max_renewals, max_hold_ms, waiter_lease_ms)
                VALUES (p_resource, p_waiter, p_client, p_kind, p_ttl_ms, v_now + p_waiter_lease_ms * 1000,
                        p_lock_id, p_max_renewals, p_max_hold_ms, p_waiter_lease_ms);
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
CREATE OR REPLACE FUNCTION {p}release(p_lock_id text, p_client text, p_hash integer)
RETURNS {p}reply LANGUAGE plpgsql AS $$
DECLARE
    o {p}reply;
    l {p}leases;
    r {p}resources;
    v_until bigint;
    v_acquired bigint;
    v_now bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
BEGIN
    -- An exclusive lease: one statement.
    WITH old AS (
        SELECT resource, holder_until, holder_acquired FROM {p}resources
        WHERE key_hash = p_hash AND holder = p_lock_id AND (p_client IS NULL OR holder_client = p_client)
        FOR UPDATE
    )
    UPDATE {p}resources x SET holder = NULL, holder_until = 0,
            released = released + (old.holder_until > v_now)::integer,
            expired = expired + (old.holder_until <= v_now)::integer,
            hold_ms = hold_ms + (least(old.holder_until, v_now) - old.holder_acquired) / 1000
        FROM old WHERE x.resource = old.resource
        RETURNING old.holder_until, old.holder_acquired, x.resource, x.shared_until, x.queued
        INTO v_until, v_acquired, r.resource, r.shared_until, r.queued;
    IF FOUND THEN
        r.holder_until := 0;
        o.resource := r.resource;
        IF v_until <= v_now THEN
            o.status := 'lost';
        ELSE
            o.status := 'released';
            o.held_us := greatest(v_now - v_acquired, 0);
        END IF;
        IF r.queued > 0 THEN
            o.handed := {p}hand_over(r, v_now);
        END IF;
        RETURN o;
    END IF;
    DELETE FROM {p}leases WHERE lock_id = p_lock_id AND (p_client IS NULL OR client_id = p_client)
        RETURNING * INTO l;
    IF NOT FOUND THEN
        SELECT resource INTO o.resource FROM {p}leases WHERE lock_id = p_lock_id;
        IF NOT FOUND THEN
            SELECT resource INTO o.resource FROM {p}resources WHERE key_hash = p_hash AND holder = p_lock_id;
        END IF;
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
            released = released + (o.status = 'released')::integer,
            expired = expired + (o.status = 'lost')::integer,
            hold_ms = hold_ms + coalesce(o.held_us, l.expires_us - l.acquired_us) / 1000,
            shared_until = coalesce((SELECT max(expires_us) FROM {p}leases
                WHERE resource = l.resource AND expires_us > v_now), 0)
        WHERE resource = l.resource RETURNING * INTO r;
    IF r.queued > 0 THEN
        o.handed := {p}hand_over(r, v_now);
    END IF;
    RETURN o;
END
$$;

-- The expiry a renewal by p_ttl_ms gives lease `o` (its acquired_us, ttl_ms, renewals read; null p_ttl_ms: its
-- own ttl), or null when a cap forbids it.
CREATE OR REPLACE FUNCTION {p}renewed_until(
    o {p}reply, p_ttl_ms bigint, p_max_renewals integer, p_max_hold_ms bigint
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_new bigint;
BEGIN
    IF p_max_renewals IS NOT NULL AND o.renewals >= p_max_renewals THEN
        RETURN NULL;
    END IF;
    v_new := o.now_us + coalesce(p_ttl_ms, o.ttl_ms) * 1000;
    IF p_max_hold_ms IS NOT NULL THEN
        v_new := least(v_new, o.acquired_us + p_max_hold_ms * 1000);
        IF v_new <= o.now_us THEN
            RETURN NULL;
        END IF;
    END IF;
    RETURN v_new;
END
$$;

-- Extends a lease: 'renewed' (the lease's new state), 'capped' (expires_us unchanged), 'lost', 'not_found',
-- 'not_owner'. p_ttl_ms null: the lease's own ttl.
CREATE OR REPLACE FUNCTION {p}renew(p_lock_id text, p_ttl_ms bigint, p_client text, p_hash integer)
RETURNS {p}reply LANGUAGE plpgsql AS $$
DECLARE
    o {p}reply;
    r {p}resources;
    l {p}leases;
    v_new bigint;
    v_max_renewals integer;
    v_max_hold bigint;
BEGIN
    SELECT * INTO r FROM {p}resources WHERE key_hash = p_hash AND holder = p_lock_id FOR UPDATE;
    IF FOUND THEN
        o.resource := r.resource;
        o.kind := r.holder_kind;
        o.client := r.holder_client;
        o.acquired_us := r.holder_acquired;
        o.expires_us := r.holder_until;
        o.ttl_ms := r.holder_ttl_ms;
        o.fence := r.holder_fence;
        o.renewals := r.holder_renewals;
        v_max_renewals := r.holder_max_renewals;
        v_max_hold := r.holder_max_hold_ms;
    ELSE
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
        v_max_renewals := l.max_renewals;
        v_max_hold := l.max_hold_ms;
    END IF;
    IF p_client IS NOT NULL AND o.client <> p_client THEN
        o.status := 'not_owner';
        RETURN o;
    END IF;
    o.now_us := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    IF o.expires_us <= o.now_us THEN
        o.status := 'lost';
        RETURN o;
    END IF;
    v_new := {p}renewed_until(o, p_ttl_ms, v_max_renewals, v_max_hold);
    IF v_new IS NULL THEN
        o.status := 'capped';
        RETURN o;
    END IF;
    o.expires_us := v_new;
    o.ttl_ms := coalesce(p_ttl_ms, o.ttl_ms);
    o.renewals := o.renewals + 1;
    o.status := 'renewed';
    IF r.resource IS NOT NULL THEN
        UPDATE {p}resources SET holder_until = v_new, holder_ttl_ms = o.ttl_ms, holder_renewals = o.renewals
            WHERE resource = r.resource;
    ELSE
        UPDATE {p}leases SET expires_us = v_new, ttl_ms = o.ttl_ms, renewals = o.renewals
            WHERE lock_id = p_lock_id;
        UPDATE {p}resources SET shared_until = greatest(shared_until, v_new) WHERE resource = l.resource;
    END IF;
    RETURN o;
END
$$;

-- Several operations in one call and one transaction (the client's group commit: one round trip and one WAL
-- flush for all). p_op[i] is 'acquire', 'release' or 'renew'; the other arrays hold each operation's
-- arguments (null where unused), p_hash its resource's hash. The client sends them in the order of that hash
-- (see the top of this file); each answers one row, o_i naming it.
CREATE OR REPLACE FUNCTION {p}batch(
    p_op text[], p_resource text[], p_hash integer[], p_lock_id text[], p_kind text[], p_ttl_ms bigint[],
    p_client text[], p_waiter text[], p_waiter_lease_ms bigint[], p_max_renewals integer[],
    p_max_hold_ms bigint[], p_max_waiters integer
) RETURNS TABLE (
    o_i integer, o_status text, o_resource text, o_kind text, o_client text, o_fence bigint, o_now_us bigint,
    o_expires_us bigint, o_remaining_us bigint, o_retry_us bigint, o_held_us bigint, o_acquired_us bigint,
    o_ttl_ms bigint, o_renewals integer, o_handed text
) LANGUAGE plpgsql AS $$
DECLARE
    v {p}reply;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_op, 1), 0) LOOP
        IF p_op[i] = 'acquire' THEN
            v := {p}acquire(p_resource[i], p_hash[i], p_lock_id[i], p_kind[i], p_ttl_ms[i], p_client[i],
                            p_waiter[i], p_waiter_lease_ms[i], p_max_renewals[i], p_max_hold_ms[i], p_max_waiters);
        ELSIF p_op[i] = 'release' THEN
            v := {p}release(p_lock_id[i], p_client[i], p_hash[i]);
        ELSE
            v := {p}renew(p_lock_id[i], p_ttl_ms[i], p_client[i], p_hash[i]);
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
        o_handed := v.handed;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Leaves a queue and wakes whoever may proceed because of it. False when the waiter was not queued (a release
-- may have handed it the lock: its caller then releases that lease).
CREATE OR REPLACE FUNCTION {p}leave(p_resource text, p_waiter text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    r {p}resources;
    v_now bigint;
    v_n integer;
    v_was boolean;
BEGIN
    SELECT * INTO r FROM {p}resources WHERE resource = p_resource FOR UPDATE;
    IF NOT FOUND OR r.queued = 0 THEN
        RETURN false;
    END IF;
    v_now := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    DELETE FROM {p}waiters WHERE resource = p_resource AND waiter_id = p_waiter;
    v_was := FOUND;
    DELETE FROM {p}waiters WHERE resource = p_resource AND deadline_us < v_now;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    r.queued := r.queued - v_n - v_was::integer;
    UPDATE {p}resources SET queued = r.queued WHERE resource = p_resource;
    PERFORM {p}wake_eligible(r, v_now);
    RETURN v_was;
END
$$;

-- Housekeeping: forgets leases that ended longer than p_retain_us ago (counted as expired), dead waiters, and
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
        UPDATE {p}resources SET expired = expired + 1, hold_ms = hold_ms + (l.expires_us - l.acquired_us) / 1000
            WHERE resource = l.resource;
        DELETE FROM {p}leases WHERE lock_id = l.lock_id;
        v_forgot := v_forgot + 1;
    END LOOP;
    WITH gone AS (
        UPDATE {p}resources SET holder = NULL, holder_until = 0, expired = expired + 1,
                hold_ms = hold_ms + (holder_until - holder_acquired) / 1000
            WHERE resource IN (SELECT resource FROM {p}resources WHERE holder IS NOT NULL AND holder_until < v_before
                               LIMIT 1000 FOR UPDATE SKIP LOCKED)
            RETURNING 1
    ) SELECT v_forgot + count(*) INTO v_forgot FROM gone;
    FOR r IN SELECT DISTINCT resource FROM {p}waiters WHERE deadline_us < v_before LIMIT 1000 LOOP
        PERFORM 1 FROM {p}resources WHERE resource = r.resource FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        DELETE FROM {p}waiters WHERE resource = r.resource AND deadline_us < v_before;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        UPDATE {p}resources SET queued = queued - v_n WHERE resource = r.resource;
    END LOOP;
    FOR r IN SELECT * FROM {p}resources WHERE holder IS NULL AND fence < v_before AND shared_until < v_before
               AND queued = 0 LIMIT 1000 FOR UPDATE SKIP LOCKED LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM {p}leases WHERE resource = r.resource);
        UPDATE {p}totals SET released = released + r.released, expired = expired + r.expired,
            hold_ms = hold_ms + r.hold_ms WHERE id = 1;
        DELETE FROM {p}resources WHERE resource = r.resource;
    END LOOP;
    RETURN v_forgot;
END
$$;
