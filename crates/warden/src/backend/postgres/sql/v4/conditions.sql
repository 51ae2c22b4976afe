-- Conditional acquires. `{p}` is the table prefix.

-- One acquire attempt that is granted only if a condition on the resource's history holds, judged while this
-- transaction holds the resource's row, so no grant can come in between. p_cond is 'f' || token (the last fence
-- is still that token) or 'g' || window_us (no grant within the window: a fence is at least its grant's clock in
-- µs; a row the sweep forgot had no grant for the retention period, which the client checks covers the window).
-- 'condition': fence is the last fence (null: not remembered), now_us the clock. Otherwise as {p}acquire; a
-- waiter it queues keeps no lock id, so a release wakes it (its own attempt judges the condition) rather than
-- handing it the lock.
CREATE OR REPLACE FUNCTION {p}acquire_if(
    p_cond text, p_resource text, p_hash integer, p_lock_id text, p_kind text, p_ttl_ms bigint, p_client text,
    p_waiter text, p_waiter_lease_ms bigint, p_max_renewals integer, p_max_hold_ms bigint, p_max_waiters integer,
    p_priority integer
) RETURNS {p}reply LANGUAGE plpgsql AS $$
DECLARE
    o {p}reply;
    r {p}resources;
    v_now bigint;
    v_mine boolean;
    v_holds boolean;
BEGIN
    r := {p}lock_resource(p_resource, p_hash);
    v_now := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    -- A retried attempt whose grant was made but not seen is answered by {p}acquire.
    v_mine := r.holder IS NOT DISTINCT FROM p_lock_id OR EXISTS (SELECT 1 FROM {p}leases WHERE lock_id = p_lock_id);
    IF left(p_cond, 1) = 'f' THEN
        v_holds := r.fence = substr(p_cond, 2)::bigint;
    ELSE
        v_holds := r.fence = 0 OR v_now - r.fence >= substr(p_cond, 2)::bigint;
    END IF;
    IF NOT v_holds AND NOT v_mine THEN
        o.status := 'condition';
        o.fence := nullif(r.fence, 0);
        o.now_us := v_now;
        RETURN o;
    END IF;
    o := {p}acquire(p_resource, p_hash, p_lock_id, p_kind, p_ttl_ms, p_client, p_waiter, p_waiter_lease_ms,
                    p_max_renewals, p_max_hold_ms, p_max_waiters, p_priority);
    IF o.status = 'queued' AND p_waiter IS NOT NULL THEN
        UPDATE {p}waiters SET lock_id = NULL WHERE resource = p_resource AND waiter_id = p_waiter;
    END IF;
    RETURN o;
END
$$;
