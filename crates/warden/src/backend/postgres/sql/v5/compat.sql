-- Schema version 5, after its functions. `{p}` is the table prefix.

-- The signatures of version 4, which a process of that version still running calls (through its {p}batch):
-- they wait with priority 0.
CREATE OR REPLACE FUNCTION {p}acquire(
    p_resource text, p_hash integer, p_lock_id text, p_kind text, p_ttl_ms bigint, p_client text,
    p_waiter text, p_waiter_lease_ms bigint, p_max_renewals integer, p_max_hold_ms bigint, p_max_waiters integer
) RETURNS {p}reply LANGUAGE sql AS $$
    SELECT {p}acquire(p_resource, p_hash, p_lock_id, p_kind, p_ttl_ms, p_client, p_waiter, p_waiter_lease_ms,
                      p_max_renewals, p_max_hold_ms, p_max_waiters, 0)
$$;

CREATE OR REPLACE FUNCTION {p}acquire_if(
    p_cond text, p_resource text, p_hash integer, p_lock_id text, p_kind text, p_ttl_ms bigint, p_client text,
    p_waiter text, p_waiter_lease_ms bigint, p_max_renewals integer, p_max_hold_ms bigint, p_max_waiters integer
) RETURNS {p}reply LANGUAGE sql AS $$
    SELECT {p}acquire_if(p_cond, p_resource, p_hash, p_lock_id, p_kind, p_ttl_ms, p_client, p_waiter,
                         p_waiter_lease_ms, p_max_renewals, p_max_hold_ms, p_max_waiters, 0)
$$;
