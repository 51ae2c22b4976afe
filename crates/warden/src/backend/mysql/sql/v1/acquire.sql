-- Acquiring. `{p}` is the table prefix. Every operation answers one row of the same columns: status, resource,
-- kind, client, fence, now_us, expires_us, remaining_us, retry_us, held_us, acquired_us, ttl_ms, renewals, told
-- (what waiters were told) and bells (whose processes to ring), each set where its status reads it. Statements
-- assign columns left to right, each seeing the ones before (the default of MySQL and MariaDB).

-- One acquire attempt. 'granted': fence, now_us, expires_us (remaining_us when the lease was found granted by an
-- earlier attempt). 'queued': retry_us, when the blocking lease ends (null if unknown); the waiter, if any, is
-- queued (or its waiter lease refreshed and its bell updated). 'full': the queue is full. 'conflict': the
-- resource is in use as something else (kind: 'semaphore:N', or 'lock'). A semaphore's kind carries its permits
-- ('semaphore:3'); its leases live in {p}leases as shared ones do, and the resource's row keeps its permits.
-- p_cond (NULL: none) is a conditional acquire's condition: 'f' + token (the last fence is still that token) or
-- 'g' + window_us (no grant within the window: a fence is at least its grant's clock in µs; a row the sweep
-- forgot had no grant for the retention period, which the client checks covers the window), judged while the
-- resource's row is locked, in the transaction that grants. 'condition': fence is the last fence (null: not
-- remembered). A conditional waiter is queued without its lock id, so a release wakes it rather than handing it
-- the lock. p_priority (-100..=100) sets the place the waiter joins at (see {p}waiters.place).
DROP PROCEDURE IF EXISTS {p}acquire_with
$$
CREATE PROCEDURE {p}acquire_with(
    IN p_cond VARCHAR(32), IN p_resource VARBINARY(512), IN p_hash INT UNSIGNED, IN p_lock_id VARBINARY(64),
    IN p_kind VARCHAR(16), IN p_ttl_ms BIGINT, IN p_client VARBINARY(256), IN p_waiter VARBINARY(64),
    IN p_waiter_lease_ms BIGINT, IN p_max_renewals INT, IN p_max_hold_ms BIGINT, IN p_max_waiters INT,
    IN p_own BIGINT, IN p_priority INT
)
proc: BEGIN
    DECLARE v_now, v_fence, v_excl_until, v_shared_until, v_intent_until, v_expires, v_retry, v_mine BIGINT;
    DECLARE v_rivals, v_joined BOOLEAN DEFAULT FALSE;
    DECLARE v_holder VARBINARY(64);
    DECLARE v_queued INT;
    DECLARE v_gone INT DEFAULT 0;
    DECLARE v_excl BOOLEAN DEFAULT p_kind IN ('exclusive', 'write');
    DECLARE v_allowed BOOLEAN DEFAULT TRUE;
    DECLARE v_holds BOOLEAN;
    DECLARE v_seq, v_place BIGINT DEFAULT 0;
    DECLARE v_at BIGINT DEFAULT -9223372036854775807;
    DECLARE w_seq, w_place, w_deadline BIGINT;
    DECLARE w_id VARBINARY(64);
    DECLARE w_kind VARCHAR(16);
    DECLARE v_permits INT DEFAULT IF(p_kind LIKE 'semaphore:%', CAST(SUBSTRING(p_kind, 11) AS UNSIGNED), 0);
    DECLARE v_use, v_live INT;
    DECLARE v_ahead INT DEFAULT 0;
    DECLARE v_told, v_bells MEDIUMTEXT CHARACTER SET ascii;
    DECLARE CONTINUE HANDLER FOR NOT FOUND BEGIN END;
    DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
    SET v_now = CAST(UNIX_TIMESTAMP(SYSDATE(6)) * 1000000 AS SIGNED);
    -- The common case in one statement (committed by itself): a free resource with nobody queued. An ended lease
    -- still on the row is counted as expired as it is replaced. The fence comes back as LAST_INSERT_ID. Tried
    -- only when a read without a lock finds the resource free: an acquire that will queue (most that come here:
    -- a process's uncontended grants go through its batches) takes the row's lock once, not twice.
    IF v_excl AND p_cond IS NULL AND NOT EXISTS (SELECT 1 FROM {p}resources WHERE resource = p_resource
                                                    AND (excl_until > v_now OR queued > 0)) THEN
        UPDATE {p}resources SET expired = expired + (holder IS NOT NULL),
                hold_ms = hold_ms + COALESCE((excl_until - holder_acquired) DIV 1000, 0),
                fence = LAST_INSERT_ID(GREATEST(fence + 1, v_now)), holder_fence = fence, holder = p_lock_id,
                holder_kind = p_kind, holder_client = p_client, holder_acquired = v_now,
                excl_until = v_now + p_ttl_ms * 1000, holder_ttl_ms = p_ttl_ms, holder_renewals = 0,
                holder_max_renewals = p_max_renewals, holder_max_hold_ms = p_max_hold_ms, grants = grants + 1,
                permits = 0
            WHERE resource = p_resource AND excl_until <= v_now AND shared_until <= v_now AND queued = 0;
        IF ROW_COUNT() > 0 THEN
            SELECT 'granted', p_resource, NULL, NULL, LAST_INSERT_ID(), v_now, v_now + p_ttl_ms * 1000, NULL, NULL,
                   NULL, NULL, NULL, NULL, NULL, NULL;
            LEAVE proc;
        END IF;
    END IF;
    START TRANSACTION;
    SELECT fence, holder, excl_until, shared_until, queued, permits, intent_until, head_place
        INTO v_fence, v_holder, v_excl_until, v_shared_until, v_queued, v_use, v_intent_until, v_at
        FROM {p}resources WHERE resource = p_resource FOR UPDATE;
    IF v_fence IS NULL THEN
        INSERT INTO {p}resources (resource, key_hash) VALUES (p_resource, p_hash)
            ON DUPLICATE KEY UPDATE fence = fence;
        SELECT fence, holder, excl_until, shared_until, queued, permits, intent_until, head_place
            INTO v_fence, v_holder, v_excl_until, v_shared_until, v_queued, v_use, v_intent_until, v_at
            FROM {p}resources WHERE resource = p_resource FOR UPDATE;
    END IF;
    SET v_now = CAST(UNIX_TIMESTAMP(SYSDATE(6)) * 1000000 AS SIGNED);
    -- Its place, were it to join the queue now: the clock less its priority's head start (see
    -- {p}waiters.place). A queued waiter's own place is at most that (it joined earlier with the same priority).
    SET v_place = v_now - COALESCE(p_priority, 0) * 100000;
    -- Only the first in the queue's order (or a shared waiter ahead of every live exclusive one) may go, the
    -- queue being the waiters before this one's place, from where its live waiters begin (see
    -- {p}resources.head_place). Dead waiters met on the way leave (the ones further back leave when they
    -- reach the head, or by the sweep). While an exclusive lease lives nobody may go, and the scan is skipped
    -- (the release that ends it hands the lock over).
    IF v_queued > 0 AND v_excl_until <= v_now THEN
        scan: LOOP
            SET w_seq = NULL;
            SELECT seq, place, waiter_id, kind, deadline_us INTO w_seq, w_place, w_id, w_kind, w_deadline
                FROM {p}waiters
                WHERE resource = p_resource AND (place > v_at OR (place = v_at AND seq > v_seq))
                ORDER BY place, seq LIMIT 1;
            IF w_seq IS NULL THEN
                LEAVE scan;
            END IF;
            SET v_at = w_place, v_seq = w_seq;
            IF w_deadline < v_now THEN
                DELETE FROM {p}waiters WHERE seq = w_seq;
                SET v_gone = v_gone + 1;
                ITERATE scan;
            END IF;
            IF w_id = p_waiter OR w_place > v_place THEN
                LEAVE scan;
            END IF;
            IF v_permits > 0 THEN
                SET v_ahead = v_ahead + 1;
                IF v_ahead >= v_permits THEN
                    LEAVE scan;
                END IF;
                ITERATE scan;
            END IF;
            -- Not ahead of a waiter it is not compatible with (shared and intent-exclusive exclude each other).
            IF v_excl OR w_kind IN ('exclusive', 'write') OR (p_kind IN ('shared', 'read') AND w_kind = 'intent-exclusive')
               OR (p_kind = 'intent-exclusive' AND w_kind IN ('shared', 'read')) THEN
                SET v_allowed = FALSE;
                LEAVE scan;
            END IF;
        END LOOP;
        SET v_queued = v_queued - v_gone;
    END IF;
    -- A semaphore and a lock never share a name, nor two semaphores with different permits.
    IF (v_excl_until > v_now OR v_shared_until > v_now OR v_queued > 0) AND v_use <> v_permits THEN
        UPDATE {p}resources SET queued = v_queued WHERE resource = p_resource AND queued <> v_queued;
        COMMIT;
        SELECT 'conflict', p_resource, IF(v_use > 0, CONCAT('semaphore:', v_use), 'lock'), NULL, NULL, v_now, NULL,
               NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL;
        LEAVE proc;
    END IF;
    -- A retried attempt whose grant was made (by it, or by a release that handed it over) but not seen.
    IF v_holder = p_lock_id AND v_excl_until > v_now THEN
        SELECT holder_fence, excl_until INTO v_mine, v_expires FROM {p}resources WHERE resource = p_resource;
    ELSEIF NOT v_excl AND v_shared_until > v_now THEN
        SELECT fence, expires_us INTO v_mine, v_expires FROM {p}leases
            WHERE lock_id = p_lock_id AND resource = p_resource AND expires_us > v_now;
    END IF;
    IF v_mine IS NOT NULL THEN
        IF p_waiter IS NOT NULL AND v_queued > 0 THEN
            DELETE FROM {p}waiters WHERE resource = p_resource AND waiter_id = p_waiter;
            SET v_queued = v_queued - ROW_COUNT();
        END IF;
        UPDATE {p}resources SET queued = v_queued WHERE resource = p_resource AND queued <> v_queued;
        COMMIT;
        SELECT 'granted', p_resource, NULL, NULL, v_mine, v_now, v_expires, v_expires - v_now, NULL, NULL, NULL,
               NULL, NULL, NULL, NULL;
        LEAVE proc;
    END IF;
    IF p_cond IS NOT NULL THEN
        IF LEFT(p_cond, 1) = 'f' THEN
            SET v_holds = v_fence = CAST(SUBSTRING(p_cond, 2) AS SIGNED);
        ELSE
            SET v_holds = v_fence = 0 OR v_now - v_fence >= CAST(SUBSTRING(p_cond, 2) AS SIGNED);
        END IF;
        IF NOT v_holds THEN
            UPDATE {p}resources SET queued = v_queued WHERE resource = p_resource AND queued <> v_queued;
            IF v_gone > 0 THEN
                CALL {p}hand_over(p_resource, v_now, p_own, v_told, v_bells);
            END IF;
            COMMIT;
            SELECT 'condition', p_resource, NULL, NULL, NULLIF(v_fence, 0), v_now, NULL, NULL, NULL, NULL, NULL,
                   NULL, NULL, v_told, v_bells;
            LEAVE proc;
        END IF;
    END IF;
    IF v_permits > 0 AND v_allowed THEN
        -- Granted while fewer live waiters are ahead than permits are free.
        SELECT COUNT(*) INTO v_live FROM {p}leases WHERE resource = p_resource AND expires_us > v_now;
        SET v_allowed = v_live + v_ahead < v_permits;
    END IF;
    -- A live lease that excludes this kind: shared and intent-exclusive exclude each other.
    IF p_kind IN ('shared', 'read') AND v_intent_until > v_now THEN
        SET v_rivals = EXISTS (SELECT 1 FROM {p}leases WHERE resource = p_resource AND expires_us > v_now
                                   AND kind = 'intent-exclusive');
    ELSEIF p_kind = 'intent-exclusive' AND v_shared_until > v_now THEN
        SET v_rivals = EXISTS (SELECT 1 FROM {p}leases WHERE resource = p_resource AND expires_us > v_now
                                   AND kind IN ('shared', 'read'));
    END IF;
    IF v_allowed AND v_excl_until <= v_now AND (NOT v_excl OR v_shared_until <= v_now) AND NOT v_rivals THEN
        SET v_fence = GREATEST(v_fence + 1, v_now), v_expires = v_now + p_ttl_ms * 1000;
        IF p_waiter IS NOT NULL AND v_queued > 0 THEN
            DELETE FROM {p}waiters WHERE resource = p_resource AND waiter_id = p_waiter;
            SET v_queued = v_queued - ROW_COUNT();
        END IF;
        IF v_excl THEN
            UPDATE {p}resources SET expired = expired + (holder IS NOT NULL),
                    hold_ms = hold_ms + COALESCE((excl_until - holder_acquired) DIV 1000, 0),
                    fence = v_fence, holder_fence = v_fence, holder = p_lock_id, holder_kind = p_kind,
                    holder_client = p_client, holder_acquired = v_now, excl_until = v_expires,
                    holder_ttl_ms = p_ttl_ms, holder_renewals = 0, holder_max_renewals = p_max_renewals,
                    holder_max_hold_ms = p_max_hold_ms, grants = grants + 1, queued = v_queued, permits = 0
                WHERE resource = p_resource;
        ELSE
            -- An ended lease under this lock id (a retry's) is granted anew.
            REPLACE INTO {p}leases (lock_id, resource, kind, client_id, acquired_us, expires_us, ttl_ms, fence,
                                    max_renewals, max_hold_ms)
                VALUES (p_lock_id, p_resource, p_kind, p_client, v_now, v_expires, p_ttl_ms, v_fence,
                        p_max_renewals, p_max_hold_ms);
            UPDATE {p}resources SET fence = v_fence, queued = v_queued, grants = grants + 1,
                    shared_until = GREATEST(shared_until, v_expires), permits = v_permits,
                    intent_until = IF(p_kind LIKE 'intent-%', GREATEST(intent_until, v_expires), intent_until)
                WHERE resource = p_resource;
        END IF;
        COMMIT;
        SELECT 'granted', p_resource, NULL, NULL, v_fence, v_now, v_expires, NULL, NULL, NULL, NULL, NULL, NULL,
               NULL, NULL;
        LEAVE proc;
    END IF;
    IF v_excl_until > v_now THEN
        SET v_retry = v_excl_until - v_now;
    ELSEIF (v_excl OR v_permits > 0 OR v_rivals) AND v_shared_until > v_now THEN
        SELECT MIN(expires_us) - v_now INTO v_retry FROM {p}leases
            WHERE resource = p_resource AND expires_us > v_now;
    END IF;
    IF p_waiter IS NOT NULL THEN
        IF v_queued >= p_max_waiters
           AND NOT EXISTS (SELECT 1 FROM {p}waiters WHERE resource = p_resource AND waiter_id = p_waiter) THEN
            COMMIT;
            SELECT 'full', p_resource, NULL, NULL, NULL, v_now, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                   NULL;
            LEAVE proc;
        END IF;
        INSERT INTO {p}waiters (resource, waiter_id, client_id, kind, ttl_ms, deadline_us, lock_id, max_renewals,
                                max_hold_ms, waiter_lease_ms, bell, place)
            VALUES (p_resource, p_waiter, p_client, p_kind, p_ttl_ms, v_now + p_waiter_lease_ms * 1000,
                    IF(p_cond IS NULL, p_lock_id, ''),
                    p_max_renewals, p_max_hold_ms, p_waiter_lease_ms, p_own, v_place)
            ON DUPLICATE KEY UPDATE deadline_us = VALUES(deadline_us), bell = VALUES(bell);
        -- 1: a new row (2 or 0: an existing one, updated or not), which may be ahead of every other.
        IF ROW_COUNT() = 1 THEN
            SET v_queued = v_queued + 1, v_joined = TRUE;
        END IF;
    END IF;
    UPDATE {p}resources SET queued = v_queued, head_place = IF(v_joined, LEAST(head_place, v_place), head_place)
        WHERE resource = p_resource AND (queued <> v_queued OR v_joined);
    IF v_gone > 0 THEN
        -- Dead waiters left: whoever is now at the head may go.
        CALL {p}hand_over(p_resource, v_now, p_own, v_told, v_bells);
    END IF;
    COMMIT;
    SELECT 'queued', p_resource, NULL, NULL, NULL, v_now, NULL, NULL, v_retry, NULL, NULL, NULL, NULL, v_told,
           v_bells;
END
$$
-- The acquires of schema versions 1 to 3, for processes of an earlier build while an upgrade rolls out: they
-- wait with priority 0.
DROP PROCEDURE IF EXISTS {p}acquire_if
$$
CREATE PROCEDURE {p}acquire_if(
    IN p_cond VARCHAR(32), IN p_resource VARBINARY(512), IN p_hash INT UNSIGNED, IN p_lock_id VARBINARY(64),
    IN p_kind VARCHAR(16), IN p_ttl_ms BIGINT, IN p_client VARBINARY(256), IN p_waiter VARBINARY(64),
    IN p_waiter_lease_ms BIGINT, IN p_max_renewals INT, IN p_max_hold_ms BIGINT, IN p_max_waiters INT,
    IN p_own BIGINT
)
BEGIN
    CALL {p}acquire_with(p_cond, p_resource, p_hash, p_lock_id, p_kind, p_ttl_ms, p_client, p_waiter,
                         p_waiter_lease_ms, p_max_renewals, p_max_hold_ms, p_max_waiters, p_own, 0);
END
$$
DROP PROCEDURE IF EXISTS {p}acquire
$$
CREATE PROCEDURE {p}acquire(
    IN p_resource VARBINARY(512), IN p_hash INT UNSIGNED, IN p_lock_id VARBINARY(64), IN p_kind VARCHAR(16), IN p_ttl_ms BIGINT,
    IN p_client VARBINARY(256), IN p_waiter VARBINARY(64), IN p_waiter_lease_ms BIGINT, IN p_max_renewals INT,
    IN p_max_hold_ms BIGINT, IN p_max_waiters INT, IN p_own BIGINT
)
BEGIN
    CALL {p}acquire_with(NULL, p_resource, p_hash, p_lock_id, p_kind, p_ttl_ms, p_client, p_waiter,
                         p_waiter_lease_ms, p_max_renewals, p_max_hold_ms, p_max_waiters, p_own, 0);
END
