-- Acquiring. `{p}` is the table prefix (default `warden_`).
-- Lease operations run inside {p}batch, many in one transaction. Times are microseconds since the Unix epoch on
-- the database server's clock. An exclusive lease lives on its resource's row; a shared one in {p}leases. An
-- acquire locks the resource's row (then writes a shared lease's row); a release or renewal of a shared lease
-- locks its row, then the resource's. A lease belongs to one resource, and a batch takes resources in the order
-- of a hash of their name (lock ids end with their resource's), so two batches never wait for each other in a
-- circle (PostgreSQL would break one after deadlock_timeout if two hashes collided).

-- The resource's row, locked by this transaction (created first if the resource has none).
CREATE OR REPLACE FUNCTION {p}lock_resource(p_resource text, p_hash integer) RETURNS {p}resources
LANGUAGE plpgsql AS $$
DECLARE
    r {p}resources;
BEGIN
    LOOP
        SELECT * INTO r FROM {p}resources WHERE resource = p_resource FOR UPDATE;
        EXIT WHEN FOUND;
        INSERT INTO {p}resources (resource, key_hash) VALUES (p_resource, p_hash) ON CONFLICT DO NOTHING;
    END LOOP;
    RETURN r;
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
    ELSIF p_kind LIKE 'intent-%' THEN
        UPDATE {p}resources SET intent_until = greatest(intent_until, o.expires_us) WHERE resource = p_resource;
    END IF;
    o.status := 'granted';
    RETURN o;
END
$$;

-- One acquire attempt. 'granted': fence, now_us, expires_us (remaining_us when the lease was found granted by
-- an earlier attempt). 'queued': retry_us, when the blocking lease ends (null if unknown); the waiter, if any,
-- is queued or its waiter lease refreshed. 'full': the queue is full. 'conflict': the resource is in use as
-- something else (kind: 'semaphore:N', or 'lock'). A semaphore's kind carries its permits ('semaphore:3'); its
-- leases live in {p}leases as shared ones do, and the resource's row keeps its permits while it is in use.
CREATE OR REPLACE FUNCTION {p}acquire(
    p_resource text, p_hash integer, p_lock_id text, p_kind text, p_ttl_ms bigint, p_client text,
    p_waiter text, p_waiter_lease_ms bigint, p_max_renewals integer, p_max_hold_ms bigint, p_max_waiters integer,
    p_priority integer
) RETURNS {p}reply LANGUAGE plpgsql AS $$
DECLARE
    o {p}reply;
    r {p}resources;
    v_place bigint;
    v_now bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    v_excl boolean := p_kind IN ('exclusive', 'write');
    v_permits integer := CASE WHEN p_kind LIKE 'semaphore:%' THEN substr(p_kind, 11)::integer ELSE 0 END;
    v_ahead integer := 0;
    v_live integer := 0;
    v_allowed boolean := true;
    v_n integer := 0;
    v_queue_changed boolean := false;
    v_rivals boolean := false;
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
        -- A shared lease joins live shared ones (never a semaphore's) while no intention is live, an
        -- intent-shared one joins any; a semaphore's first permit and an intent-exclusive lease need an idle
        -- resource here (the rest is judged below).
        UPDATE {p}resources SET fence = greatest(fence + 1, v_now),
                shared_until = greatest(shared_until, o.expires_us), permits = v_permits
            WHERE resource = p_resource AND holder_until <= v_now AND queued = 0
                AND (shared_until <= v_now OR (permits = 0 AND v_permits = 0
                    AND (p_kind = 'intent-shared' OR (p_kind <> 'intent-exclusive' AND intent_until <= v_now))))
            RETURNING fence INTO o.fence;
        IF FOUND THEN
            RETURN {p}grant_shared(o, p_resource, p_lock_id, p_kind, p_ttl_ms, p_client, p_max_renewals,
                                   p_max_hold_ms);
        END IF;
    END IF;
    r := {p}lock_resource(p_resource, p_hash);
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
    -- Its place, were it to join the queue now: the clock less its priority's head start (see
    -- {p}waiters.place). A queued waiter's own place is at most that (it joined earlier with the same priority).
    v_place := v_now - coalesce(p_priority, 0)::bigint * 100000;
    -- Only the first in the queue's order (or a shared waiter ahead of every live exclusive one) may go, the
    -- queue being the waiters before this one's place, from where its live waiters begin (see
    -- {p}resources.head_place). Dead waiters met on the way leave (the ones further back leave when they
    -- reach the head, or by the sweep). While an exclusive lease lives nobody may go, and the scan is skipped
    -- (the release that ends it hands the lock over).
    IF r.queued > 0 AND r.holder_until <= v_now THEN
        FOR w IN SELECT waiter_id, kind, deadline_us, place FROM {p}waiters
                 WHERE resource = p_resource AND place >= r.head_place ORDER BY place, seq LOOP
            IF w.deadline_us < v_now THEN
                DELETE FROM {p}waiters WHERE resource = p_resource AND waiter_id = w.waiter_id;
                v_n := v_n + 1;
                CONTINUE;
            END IF;
            EXIT WHEN w.waiter_id = p_waiter OR w.place > v_place;
            IF v_permits > 0 THEN
                v_ahead := v_ahead + 1;
                EXIT WHEN v_ahead >= v_permits;
                CONTINUE;
            END IF;
            IF NOT {p}compatible(p_kind, w.kind) THEN
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
    v_rivals := NOT v_excl AND {p}rivals(r, p_kind, v_now);
    IF v_allowed AND r.holder_until <= v_now AND (NOT v_excl OR r.shared_until <= v_now) AND NOT v_rivals THEN
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
    ELSIF (v_excl OR v_permits > 0 OR v_rivals) AND r.shared_until > v_now THEN
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
                                    max_renewals, max_hold_ms, waiter_lease_ms, place)
                VALUES (p_resource, p_waiter, p_client, p_kind, p_ttl_ms, v_now + p_waiter_lease_ms * 1000,
                        p_lock_id, p_max_renewals, p_max_hold_ms, p_waiter_lease_ms, v_place);
            r.queued := r.queued + 1;
            -- A new waiter may be ahead of every other.
            r.head_place := least(r.head_place, v_place);
            v_queue_changed := true;
        END IF;
    END IF;
    IF v_queue_changed THEN
        UPDATE {p}resources SET queued = r.queued, permits = v_permits, head_place = r.head_place
            WHERE resource = p_resource;
    END IF;
    IF v_n > 0 THEN
        PERFORM {p}wake_eligible(r, v_now);
    END IF;
    RETURN o;
END
$$;
