-- The queue, in order of place (see {p}waiters.place), then arrival: who may go when a lock frees, the direct
-- handoff of a release, leaving. `{p}` is the table prefix.

-- The waiters that may proceed now: the exclusive head of a free lock, the run of non-exclusive waiters at the
-- head whose kinds suit the holders and each other while no exclusive lease is held, or a semaphore's first
-- waiters, one per free permit. Each is sent a notification on channel `{p}wake`. `r` is the resource's row,
-- locked by the caller.
CREATE OR REPLACE FUNCTION {p}wake_eligible(r {p}resources, p_now bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_ids text := '';
    v_left integer;
    v_s boolean;
    v_x boolean;
    v_run_s boolean := false;
    v_run_x boolean := false;
    w record;
BEGIN
    IF r.holder_until > p_now THEN
        RETURN;
    END IF;
    IF coalesce(r.permits, 0) > 0 THEN
        SELECT r.permits - count(*) INTO v_left FROM {p}leases WHERE resource = r.resource AND expires_us > p_now;
    END IF;
    FOR w IN SELECT waiter_id, kind FROM {p}waiters
             WHERE resource = r.resource AND place >= r.head_place AND deadline_us >= p_now
             ORDER BY place, seq LIMIT 1000 LOOP
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
        -- Shared and intent-exclusive waiters exclude each other, in the run and among the holders.
        v_s := w.kind IN ('shared', 'read');
        v_x := w.kind = 'intent-exclusive';
        EXIT WHEN (v_s AND v_run_x) OR (v_x AND v_run_s) OR ((v_s OR v_x) AND {p}rivals(r, w.kind, p_now));
        v_run_s := v_run_s OR v_s;
        v_run_x := v_run_x OR v_x;
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
-- run of non-exclusive waiters at the head whose kinds suit the holders and each other, or to a semaphore's first waiters, one
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
    v_s boolean;
    v_x boolean;
    v_run_s boolean := false;
    v_run_x boolean := false;
    -- The place of the last waiter seen, and of the first one seen that stays queued: every waiter before the
    -- lesser of the two left the queue.
    v_at bigint := r.head_place;
    v_kept bigint;
    w record;
BEGIN
    IF r.holder_until > p_now THEN
        RETURN NULL;
    END IF;
    IF coalesce(r.permits, 0) > 0 THEN
        SELECT r.permits - count(*) INTO v_left FROM {p}leases WHERE resource = r.resource AND expires_us > p_now;
    END IF;
    o.now_us := p_now;
    -- From where the queue's live waiters begin (see {p}resources.head_place).
    FOR w IN SELECT * FROM {p}waiters WHERE resource = r.resource AND place >= r.head_place
             ORDER BY place, seq LIMIT 1000 LOOP
        v_at := w.place;
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
        -- Shared and intent-exclusive waiters exclude each other, in the run and among the holders.
        v_s := w.kind IN ('shared', 'read');
        v_x := w.kind = 'intent-exclusive';
        EXIT WHEN (v_s AND v_run_x) OR (v_x AND v_run_s) OR ((v_s OR v_x) AND {p}rivals(r, w.kind, p_now));
        v_run_s := v_run_s OR v_s;
        v_run_x := v_run_x OR v_x;
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
        ELSE
            -- A conditional waiter, woken and left queued while the run goes on behind it.
            v_kept := coalesce(v_kept, w.place);
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
                holder_max_hold_ms = v_head.max_hold_ms, head_place = coalesce(v_kept, v_at)
            WHERE resource = r.resource RETURNING fence INTO o.fence;
        v_msg := v_head.waiter_id || ':' || o.fence || ':' || p_now / 1000 || ':' || o.expires_us / 1000 || v_msg;
    ELSIF v_gone > 0 THEN
        UPDATE {p}resources SET queued = queued - v_gone, head_place = coalesce(v_kept, v_at)
            WHERE resource = r.resource;
    END IF;
    IF v_msg <> '' THEN
        PERFORM pg_notify('{p}wake', v_msg);
    END IF;
    RETURN nullif(ltrim(v_told || ' ' || v_msg), '');
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
