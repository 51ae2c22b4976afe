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
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_op, 1), 0) LOOP
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
        RETURN NEXT;
    END LOOP;
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
