-- Group commit and housekeeping. `{p}` is the table prefix.

-- Several operations in one call and one transaction (the client's group commit: one round trip and one WAL
-- flush for all). p_op[i] is 'acquire', 'acquire if ' || condition (see {p}acquire_if), 'release' or 'renew';
-- the other arrays hold each operation's arguments (null where unused; p_priority: see {p}waiters.place), p_hash
-- its resource's hash. The client sends them in the order of that hash (see the top of the acquire file); each
-- answers one row, o_i naming it.
CREATE OR REPLACE FUNCTION {p}batch(
    p_op text[], p_resource text[], p_hash integer[], p_lock_id text[], p_kind text[], p_ttl_ms bigint[],
    p_client text[], p_waiter text[], p_waiter_lease_ms bigint[], p_max_renewals integer[],
    p_max_hold_ms bigint[], p_priority integer[], p_max_waiters integer
) RETURNS TABLE (
    o_i integer, o_status text, o_resource text, o_kind text, o_client text, o_fence bigint, o_now_us bigint,
    o_expires_us bigint, o_remaining_us bigint, o_retry_us bigint, o_held_us bigint, o_acquired_us bigint,
    o_ttl_ms bigint, o_renewals integer, o_handed text
) LANGUAGE plpgsql AS $$
DECLARE
    v {p}reply;
    n integer := coalesce(array_length(p_op, 1), 0);
    v_now bigint;
    v_done boolean[];
    f record;
    -- Whether an operation granted, released, renewed or handed over: the commit then waits for the disk.
    v_flush boolean := false;
BEGIN
    IF n > 1 THEN
        -- Several operations: the uncontended exclusive releases and grants go first, each kind as one statement
        -- over the whole call (a statement per operation costs the database more in start-up than in work).
        -- Every row of the call's resources is locked first, in the order every call takes them (hash, name), so
        -- that two calls never wait for each other in a circle (a shared lease's release or renewal, here or
        -- alone in a call, locks the lease's row after its resource's).
        v_done := array_fill(false, ARRAY[n]);
        PERFORM 1 FROM {p}resources WHERE key_hash = ANY(p_hash) ORDER BY key_hash, resource FOR UPDATE;
        v_now := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
        -- Releases of live exclusive leases with nobody queued (as {p}release's first statement).
        FOR f IN
            WITH ops AS (
                SELECT t.i::integer AS i, t.lock_id, t.client, t.hash
                FROM unnest(p_op, p_lock_id, p_client, p_hash) WITH ORDINALITY AS t(op, lock_id, client, hash, i)
                WHERE t.op = 'release')
            UPDATE {p}resources r SET holder = NULL, holder_until = 0,
                    last_release_us = greatest(v_now - r.holder_acquired, 0),
                    released = r.released + 1,
                    hold_ms = r.hold_ms + (v_now - r.holder_acquired) / 1000
                FROM ops
                WHERE r.key_hash = ops.hash AND r.holder = ops.lock_id AND r.holder_until > v_now AND r.queued = 0
                    AND (ops.client IS NULL OR r.holder_client = ops.client)
                RETURNING ops.i, r.resource, r.last_release_us
        LOOP
            v_done[f.i] := true;
            v_flush := true;
            o_i := f.i;
            o_status := 'released';
            o_resource := f.resource;
            o_held_us := f.last_release_us;
            RETURN NEXT;
        END LOOP;
        o_held_us := NULL;
        -- Exclusive grants of free resources with nobody queued (as {p}acquire's first statement), each
        -- resource's first operation of the call only: the operations on one resource keep their order.
        FOR f IN
            WITH named AS (
                SELECT t.i::integer AS i, t.op, t.resource, t.lock_id, t.kind, t.ttl_ms, t.client,
                       t.max_renewals, t.max_hold_ms,
                       min(t.i) OVER (PARTITION BY t.resource) AS first_i
                FROM unnest(p_op, p_resource, p_lock_id, p_kind, p_ttl_ms, p_client, p_max_renewals, p_max_hold_ms)
                    WITH ORDINALITY AS t(op, resource, lock_id, kind, ttl_ms, client, max_renewals, max_hold_ms, i)
                WHERE t.resource IS NOT NULL),
            ops AS (SELECT * FROM named WHERE i = first_i AND op = 'acquire' AND kind IN ('exclusive', 'write'))
            UPDATE {p}resources r SET fence = greatest(r.fence + 1, v_now), holder_fence = greatest(r.fence + 1, v_now),
                    expired = r.expired + (r.holder IS NOT NULL)::integer,
                    hold_ms = r.hold_ms + coalesce((r.holder_until - r.holder_acquired) / 1000, 0),
                    holder = ops.lock_id, holder_kind = ops.kind, holder_client = ops.client, holder_acquired = v_now,
                    holder_until = v_now + ops.ttl_ms * 1000, holder_ttl_ms = ops.ttl_ms, holder_renewals = 0,
                    holder_max_renewals = ops.max_renewals, holder_max_hold_ms = ops.max_hold_ms, permits = 0
                FROM ops
                WHERE r.resource = ops.resource AND r.holder_until <= v_now AND r.shared_until <= v_now
                    AND r.queued = 0
                RETURNING ops.i, r.fence, r.holder_until
        LOOP
            v_done[f.i] := true;
            v_flush := true;
            o_i := f.i;
            o_status := 'granted';
            o_resource := NULL;
            o_fence := f.fence;
            o_now_us := v_now;
            o_expires_us := f.holder_until;
            RETURN NEXT;
        END LOOP;
    END IF;
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN v_done[i];
        IF p_op[i] = 'acquire' THEN
            v := {p}acquire(p_resource[i], p_hash[i], p_lock_id[i], p_kind[i], p_ttl_ms[i], p_client[i],
                            p_waiter[i], p_waiter_lease_ms[i], p_max_renewals[i], p_max_hold_ms[i], p_max_waiters,
                            p_priority[i]);
        ELSIF left(p_op[i], 11) = 'acquire if ' THEN
            v := {p}acquire_if(substr(p_op[i], 12), p_resource[i], p_hash[i], p_lock_id[i], p_kind[i], p_ttl_ms[i],
                               p_client[i], p_waiter[i], p_waiter_lease_ms[i], p_max_renewals[i],
                               p_max_hold_ms[i], p_max_waiters, p_priority[i]);
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
        v_flush := v_flush OR v.handed IS NOT NULL
            OR v.status NOT IN ('queued', 'full', 'conflict', 'condition', 'not_found', 'not_owner', 'capped');
        RETURN NEXT;
    END LOOP;
    -- Nothing was granted, released, renewed or handed over: waiters only joined a queue or kept their place
    -- in it. Their commit does not wait for the disk (the WAL writer flushes it within moments, and any later
    -- commit that waits flushes it too), nor does the release waiting for this resource's row. A crash of the
    -- database may forget a waiter that joined in its last moments: that waiter joins again, at the back, when
    -- its heartbeat or the listener's reconnection makes it ask again.
    IF NOT v_flush THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
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
        -- Its resource's row is skipped too while a call holds it: a call locks resource rows before lease rows,
        -- and waiting here, holding lease rows, could close a circle with it.
        PERFORM 1 FROM {p}resources WHERE resource = l.resource FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND AND EXISTS (SELECT 1 FROM {p}resources WHERE resource = l.resource);
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
