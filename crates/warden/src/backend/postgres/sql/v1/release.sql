-- Releasing and renewing a lease. `{p}` is the table prefix.

-- Releases a lease: 'released' (held_us), 'lost' (it had expired), 'not_found' or 'not_owner'; resource names
-- the lease's resource when known. The lease leaves its resource's row, which wakes the waiters that may go.
CREATE OR REPLACE FUNCTION {p}release(p_lock_id text, p_client text, p_hash integer)
RETURNS {p}reply LANGUAGE plpgsql AS $$
DECLARE
    o {p}reply;
    l {p}leases;
    r {p}resources;
    v_held bigint;
    v_now bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
BEGIN
    -- An exclusive lease: one statement (the row keeps what the answer needs in last_release_us).
    UPDATE {p}resources SET holder = NULL, holder_until = 0,
            last_release_us = CASE WHEN holder_until > v_now THEN greatest(v_now - holder_acquired, 0) ELSE -1 END,
            released = released + (holder_until > v_now)::integer,
            expired = expired + (holder_until <= v_now)::integer,
            hold_ms = hold_ms + (least(holder_until, v_now) - holder_acquired) / 1000
        WHERE key_hash = p_hash AND holder = p_lock_id AND (p_client IS NULL OR holder_client = p_client)
        RETURNING resource, shared_until, queued, head_place, last_release_us
        INTO r.resource, r.shared_until, r.queued, r.head_place, v_held;
    IF FOUND THEN
        r.holder_until := 0;
        o.resource := r.resource;
        IF v_held < 0 THEN
            o.status := 'lost';
        ELSE
            o.status := 'released';
            o.held_us := v_held;
        END IF;
        IF r.queued > 0 THEN
            o.handed := {p}hand_over(r, v_now);
        END IF;
        RETURN o;
    END IF;
    -- A shared lease: its resource's row is locked first, by a statement of its own, as every call takes them
    -- (resource, then lease: a batch locks all its resources first, and two calls never wait in a circle).
    -- Locking it before the shared leases are counted also matters: an UPDATE that waits for that lock would
    -- count them in the snapshot taken before it waited, missing a lease that an acquire holding the lock was
    -- adding, and let an exclusive acquire through while that lease lives.
    PERFORM 1 FROM {p}resources WHERE resource = (SELECT resource FROM {p}leases WHERE lock_id = p_lock_id)
        FOR UPDATE;
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
        -- A shared lease: its resource's row first (see {p}release).
        PERFORM 1 FROM {p}resources WHERE resource = (SELECT resource FROM {p}leases WHERE lock_id = p_lock_id)
            FOR UPDATE;
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
        UPDATE {p}resources SET shared_until = greatest(shared_until, v_new),
                intent_until = CASE WHEN l.kind LIKE 'intent-%' THEN greatest(intent_until, v_new)
                                    ELSE intent_until END
            WHERE resource = l.resource;
    END IF;
    RETURN o;
END
$$;
