-- The queue, in order of place (see {p}waiters.place), then arrival: the direct handoff of a release and what
-- waiters are told. `{p}` is the table prefix.

-- Hands the lock over in the caller's transaction (the resource's row locked): to the exclusive head of a free
-- lock, to the run of shared waiters at the head while no exclusive lease is held, or to a semaphore's first
-- waiters, one per free permit; dead waiters on the way
-- leave. Each is told 'waiter_id:fence:acquired_ms:expires_ms', and after an exclusive handover the next in
-- line 'waiter_id@ms' (when that lease ends), so nobody needs a round trip of its own. A handed lease lasts
-- min(ttl, waiter lease): a waiter that died while queued blocks the lock no longer than it would have blocked
-- the queue; a live one claims its ttl with its first renewal.
DROP PROCEDURE IF EXISTS {p}hand_over
$$
CREATE PROCEDURE {p}hand_over(
    IN p_resource VARBINARY(512), IN p_now BIGINT, IN p_own BIGINT,
    INOUT io_told MEDIUMTEXT CHARACTER SET ascii, INOUT io_bells MEDIUMTEXT CHARACTER SET ascii
)
proc: BEGIN
    DECLARE v_fence, v_excl_until, v_shared_until, v_intent_until, v_expires, v_head_ms BIGINT;
    DECLARE v_run_s, v_run_x BOOLEAN DEFAULT FALSE;
    DECLARE v_seq BIGINT DEFAULT 0;
    DECLARE v_at BIGINT DEFAULT -9223372036854775807;
    DECLARE v_gone, v_granted, v_seen INT DEFAULT 0;
    DECLARE v_shared, v_stop BOOLEAN DEFAULT FALSE;
    DECLARE v_msg VARBINARY(200);
    DECLARE w_seq, w_place, w_ttl, w_deadline, w_max_hold, w_lease, w_bell BIGINT;
    DECLARE w_max_renewals INT;
    DECLARE w_id, w_lock VARBINARY(64);
    DECLARE w_client VARBINARY(256);
    DECLARE w_kind VARCHAR(16);
    DECLARE v_permits, v_left INT;
    DECLARE CONTINUE HANDLER FOR NOT FOUND BEGIN END;
    -- The scan starts where the queue's live waiters begin (see {p}resources.head_place).
    SELECT fence, excl_until, shared_until, permits, intent_until, head_place
        INTO v_fence, v_excl_until, v_shared_until, v_permits, v_intent_until, v_at
        FROM {p}resources WHERE resource = p_resource;
    IF v_excl_until > p_now THEN
        LEAVE proc;
    END IF;
    IF v_permits > 0 THEN
        -- A semaphore: one waiter per free permit.
        SELECT v_permits - COUNT(*) INTO v_left FROM {p}leases WHERE resource = p_resource AND expires_us > p_now;
    END IF;
    scan: LOOP
        SET w_seq = NULL, v_seen = v_seen + 1;
        IF v_seen > 1000 THEN
            LEAVE scan;
        END IF;
        -- The first one by a plain range (the database spends a third less on it than on the pair of ranges).
        IF v_seq = 0 THEN
            SELECT seq, place, waiter_id, kind, client_id, ttl_ms, deadline_us, lock_id, max_renewals, max_hold_ms,
                   waiter_lease_ms, bell
                INTO w_seq, w_place, w_id, w_kind, w_client, w_ttl, w_deadline, w_lock, w_max_renewals, w_max_hold,
                     w_lease, w_bell
                FROM {p}waiters WHERE resource = p_resource AND place >= v_at ORDER BY place, seq LIMIT 1;
        ELSE
            SELECT seq, place, waiter_id, kind, client_id, ttl_ms, deadline_us, lock_id, max_renewals, max_hold_ms,
                   waiter_lease_ms, bell
                INTO w_seq, w_place, w_id, w_kind, w_client, w_ttl, w_deadline, w_lock, w_max_renewals, w_max_hold,
                     w_lease, w_bell
                FROM {p}waiters WHERE resource = p_resource AND (place > v_at OR (place = v_at AND seq > v_seq))
                ORDER BY place, seq LIMIT 1;
        END IF;
        IF w_seq IS NULL THEN
            LEAVE scan;
        END IF;
        SET v_at = w_place, v_seq = w_seq;
        IF w_deadline < p_now THEN
            DELETE FROM {p}waiters WHERE seq = w_seq;
            SET v_gone = v_gone + 1;
            ITERATE scan;
        END IF;
        IF v_head_ms IS NOT NULL THEN
            -- The next in line after an exclusive handover: when that lease ends.
            SET v_msg = CONCAT(w_id, '@', v_head_ms), v_stop = TRUE;
        ELSE
            IF w_kind IN ('exclusive', 'write') AND (v_shared OR v_shared_until > p_now) THEN
                LEAVE scan;
            END IF;
            -- Shared and intent-exclusive waiters exclude each other, in the run and among the holders.
            IF w_kind IN ('shared', 'read') AND (v_run_x OR (v_intent_until > p_now AND EXISTS (SELECT 1 FROM
                   {p}leases WHERE resource = p_resource AND expires_us > p_now AND kind = 'intent-exclusive'))) THEN
                LEAVE scan;
            END IF;
            IF w_kind = 'intent-exclusive' AND (v_run_s OR (v_shared_until > p_now AND EXISTS (SELECT 1 FROM
                   {p}leases WHERE resource = p_resource AND expires_us > p_now AND kind IN ('shared', 'read')))) THEN
                LEAVE scan;
            END IF;
            SET v_run_s = v_run_s OR w_kind IN ('shared', 'read'), v_run_x = v_run_x OR w_kind = 'intent-exclusive';
            IF v_left IS NOT NULL THEN
                IF v_left <= 0 THEN
                    LEAVE scan;
                END IF;
                SET v_left = v_left - 1;
            END IF;
            IF w_lock = '' THEN
                -- A conditional waiter: woken, never handed the lock (its own attempt judges its condition);
                -- nobody behind it goes first.
                SET v_msg = w_id, v_stop = TRUE;
            ELSE
                SET v_fence = GREATEST(v_fence + 1, p_now), v_expires = p_now + LEAST(w_ttl, w_lease) * 1000;
                DELETE FROM {p}waiters WHERE seq = w_seq;
                SET v_gone = v_gone + 1, v_granted = v_granted + 1;
                SET v_msg = CONCAT(w_id, ':', v_fence, ':', p_now DIV 1000, ':', v_expires DIV 1000);
                IF w_kind IN ('exclusive', 'write') THEN
                    UPDATE {p}resources SET expired = expired + (holder IS NOT NULL),
                            hold_ms = hold_ms + COALESCE((excl_until - holder_acquired) DIV 1000, 0),
                            holder_fence = v_fence, holder = w_lock, holder_kind = w_kind, holder_client = w_client,
                            holder_acquired = p_now, excl_until = v_expires, holder_ttl_ms = w_ttl,
                            holder_renewals = 0, holder_max_renewals = w_max_renewals, holder_max_hold_ms = w_max_hold
                        WHERE resource = p_resource;
                    SET v_excl_until = v_expires, v_head_ms = LEAST(w_ttl, w_lease);
                ELSE
                    REPLACE INTO {p}leases (lock_id, resource, kind, client_id, acquired_us, expires_us, ttl_ms, fence,
                                            max_renewals, max_hold_ms)
                        VALUES (w_lock, p_resource, w_kind, w_client, p_now, v_expires, w_ttl, v_fence,
                                w_max_renewals, w_max_hold);
                    SET v_shared = TRUE, v_shared_until = GREATEST(v_shared_until, v_expires);
                    IF w_kind LIKE 'intent-%' THEN
                        SET v_intent_until = GREATEST(v_intent_until, v_expires);
                    END IF;
                END IF;
            END IF;
        END IF;
        -- Told: the releasing process delivers io_told to its own waiters; a waiter of another process (another
        -- bell than the caller's) finds it in that process's inbox, whose bell is rung after commit.
        SET io_told = IF(io_told IS NULL, v_msg, CONCAT(io_told, ' ', v_msg));
        IF w_bell IS NOT NULL AND (p_own IS NULL OR w_bell <> p_own) THEN
            INSERT INTO {p}inbox (bell, msg, at_us) VALUES (w_bell, v_msg, p_now);
            SET io_bells = IF(io_bells IS NULL, w_bell, CONCAT(io_bells, ',', w_bell));
        END IF;
        IF v_stop THEN
            LEAVE scan;
        END IF;
    END LOOP;
    IF v_gone > 0 THEN
        -- Every waiter before the last one seen left the queue: the next scan starts at that one's place.
        UPDATE {p}resources SET fence = v_fence, shared_until = v_shared_until, queued = queued - v_gone,
                grants = grants + v_granted, intent_until = v_intent_until, head_place = v_at
            WHERE resource = p_resource;
    END IF;
END
$$
-- Leaves a queue, and hands the lock to whoever may have it because of that. 'left', or 'absent' when the
-- waiter was not queued (a release may have handed it the lock: its caller then releases that lease).
DROP PROCEDURE IF EXISTS {p}leave
$$
CREATE PROCEDURE {p}leave(IN p_resource VARBINARY(512), IN p_waiter VARBINARY(64), IN p_own BIGINT)
BEGIN
    DECLARE v_queued, v_was, v_dead INT;
    DECLARE v_now BIGINT;
    DECLARE v_told, v_bells MEDIUMTEXT CHARACTER SET ascii;
    DECLARE CONTINUE HANDLER FOR NOT FOUND BEGIN END;
    DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
    START TRANSACTION;
    SELECT queued INTO v_queued FROM {p}resources WHERE resource = p_resource FOR UPDATE;
    SET v_was = 0;
    IF v_queued > 0 THEN
        SET v_now = CAST(UNIX_TIMESTAMP(SYSDATE(6)) * 1000000 AS SIGNED);
        DELETE FROM {p}waiters WHERE resource = p_resource AND waiter_id = p_waiter;
        SET v_was = ROW_COUNT();
        DELETE FROM {p}waiters WHERE resource = p_resource AND deadline_us < v_now;
        SET v_dead = ROW_COUNT();
        UPDATE {p}resources SET queued = queued - v_was - v_dead WHERE resource = p_resource;
        CALL {p}hand_over(p_resource, v_now, p_own, v_told, v_bells);
    END IF;
    COMMIT;
    SELECT IF(v_was > 0, 'left', 'absent'), p_resource, NULL, NULL, NULL, v_now, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, v_told, v_bells;
END
