-- Schema version 2: semaphores. `{p}` is the table prefix. A resource's row keeps the permits of the semaphore it
-- is in use as (0: a lock); the acquire, wake-up and handover functions of version 1 are replaced by ones that
-- count permits.

ALTER TABLE {p}resources ADD COLUMN IF NOT EXISTS permits integer NOT NULL DEFAULT 0;

-- The waiters that may proceed now: the exclusive head of a free lock, the run of shared waiters at the head
-- while no exclusive lease is held, or a semaphore's first waiters, one per free permit. Each is sent a notification on channel `{p}wake`. `r` is the
-- resource's row, locked by the caller.
CREATE OR REPLACE FUNCTION {p}wake_eligible(r {p}resources, p_now bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_ids text := '';
    v_left integer;
    w record;
BEGIN
    IF r.holder_until > p_now THEN
        RETURN;
    END IF;
    IF coalesce(r.permits, 0) > 0 THEN
        SELECT r.permits - count(*) INTO v_left FROM {p}leases WHERE resource = r.resource AND expires_us > p_now;
    END IF;
    FOR w IN SELECT waiter_id, kind FROM {p}waiters
             WHERE resource = r.resource AND deadline_us >= p_now ORDER BY seq LIMIT 1000 LOOP
        IF w.kind IN ('exclusive', 'write') THEN
            IF v_ids = '' AND r.shared_until <= p_now THEN
                v_ids := w.waiter_id;
            END IF;
            EXIT;
        END IF;
        IF v_left IS NOT NULL THEN
            EXIT WHEN v_left <= 0;
            v_left := v_left - 1;
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

-- Hands the lock over in the caller's transaction (a release's): to the exclusive head of a free lock, to the
-- run of shared waiters at the head while no exclusive lease is held, or to a semaphore's first waiters, one
-- per free permit; dead waiters on the way leave. Each is
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
    v_left integer;
    w record;
BEGIN
    IF r.holder_until > p_now THEN
        RETURN NULL;
    END IF;
    IF coalesce(r.permits, 0) > 0 THEN
        SELECT r.permits - count(*) INTO v_left FROM {p}leases WHERE resource = r.resource AND expires_us > p_now;
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
        IF v_left IS NOT NULL THEN
            EXIT WHEN v_left <= 0;
            v_left := v_left - 1;
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

-- One acquire attempt. 'granted': fence, now_us, expires_us (remaining_us when the lease was found granted by
-- an earlier attempt). 'queued': retry_us, when the blocking lease ends (null if unknown); the waiter, if any,
-- is queued or its waiter lease refreshed. 'full': the queue is full. 'conflict': the resource is in use as
-- something else (kind: 'semaphore:N', or 'lock'). A semaphore's kind carries its permits ('semaphore:3'); its
-- leases live in {p}leases as shared ones do, and the resource's row keeps its permits while it is in use.
CREATE OR REPLACE FUNCTION {p}acquire(
    p_resource text, p_hash integer, p_lock_id text, p_kind text, p_ttl_ms bigint, p_client text,
    p_waiter text, p_waiter_lease_ms bigint, p_max_renewals integer, p_max_hold_ms bigint, p_max_waiters integer
) RETURNS {p}reply LANGUAGE plpgsql AS $$
DECLARE
    o {p}reply;
    r {p}resources;
    v_now bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    v_excl boolean := p_kind IN ('exclusive', 'write');
    v_permits integer := CASE WHEN p_kind LIKE 'semaphore:%' THEN substr(p_kind, 11)::integer ELSE 0 END;
    v_ahead integer := 0;
    v_live integer := 0;
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
                holder_max_renewals = p_max_renewals, holder_max_hold_ms = p_max_hold_ms, permits = 0
            WHERE resource = p_resource AND holder_until <= v_now AND shared_until <= v_now AND queued = 0
            RETURNING fence INTO o.fence;
        IF FOUND THEN
            o.status := 'granted';
            RETURN o;
        END IF;
    ELSE
        -- A shared lease joins live shared ones (never a semaphore's); a semaphore's first permit needs an idle
        -- resource.
        UPDATE {p}resources SET fence = greatest(fence + 1, v_now),
                shared_until = greatest(shared_until, o.expires_us), permits = v_permits
            WHERE resource = p_resource AND holder_until <= v_now AND queued = 0
                AND (shared_until <= v_now OR (permits = 0 AND v_permits = 0))
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
    -- FIFO: only the head (or a shared waiter ahead of every live exclusive one) may go. Dead waiters met on the
    -- way leave (the ones further back leave when they reach the head, or by the sweep).
    IF r.queued > 0 THEN
        FOR w IN SELECT waiter_id, kind, deadline_us FROM {p}waiters WHERE resource = p_resource ORDER BY seq LOOP
            IF w.deadline_us < v_now THEN
                DELETE FROM {p}waiters WHERE resource = p_resource AND waiter_id = w.waiter_id;
                v_n := v_n + 1;
                CONTINUE;
            END IF;
            EXIT WHEN w.waiter_id = p_waiter;
            IF v_permits > 0 THEN
                v_ahead := v_ahead + 1;
                EXIT WHEN v_ahead >= v_permits;
                CONTINUE;
            END IF;
            IF v_excl OR w.kind IN ('exclusive', 'write') THEN
                v_allowed := false;
                EXIT;
            END IF;
        END LOOP;
        r.queued := r.queued - v_n;
        v_queue_changed := v_n > 0;
    END IF;
    -- A semaphore and a lock never share a name, nor two semaphores with different permits.
    IF (r.holder_until > v_now OR r.shared_until > v_now OR r.queued > 0) AND r.permits <> v_permits THEN
        IF v_queue_changed THEN
            UPDATE {p}resources SET queued = r.queued WHERE resource = p_resource;
        END IF;
        o.status := 'conflict';
        o.kind := CASE WHEN r.permits > 0 THEN 'semaphore:' || r.permits ELSE 'lock' END;
        RETURN o;
    END IF;
    IF v_permits > 0 AND v_allowed THEN
        -- Granted while fewer live waiters are ahead than permits are free.
        SELECT count(*) INTO v_live FROM {p}leases WHERE resource = p_resource AND expires_us > v_now;
        v_allowed := v_live + v_ahead < v_permits;
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
                    holder_max_renewals = p_max_renewals, holder_max_hold_ms = p_max_hold_ms, permits = 0
                WHERE resource = p_resource;
            o.status := 'granted';
            RETURN o;
        END IF;
        UPDATE {p}resources SET fence = o.fence, shared_until = greatest(shared_until, o.expires_us),
            queued = r.queued, permits = v_permits WHERE resource = p_resource;
        RETURN {p}grant_shared(o, p_resource, p_lock_id, p_kind, p_ttl_ms, p_client, p_max_renewals,
                               p_max_hold_ms);
    END IF;
    o.status := 'queued';
    o.expires_us := NULL;
    IF r.holder_until > v_now THEN
        o.retry_us := r.holder_until - v_now;
    ELSIF (v_excl OR v_permits > 0) AND r.shared_until > v_now THEN
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
        UPDATE {p}resources SET queued = r.queued, permits = v_permits WHERE resource = p_resource;
    END IF;
    IF v_n > 0 THEN
        PERFORM {p}wake_eligible(r, v_now);
    END IF;
    RETURN o;
END
$$;
