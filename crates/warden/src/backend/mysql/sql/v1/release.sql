-- Releasing and renewing a lease, and the sweep. `{p}` is the table prefix. A lease's resource is read first
-- (without a lock), then its row is locked by key before the lease's: every operation locks a resource first,
-- and rows are only ever locked by their key (a lock taken through the holder index would wait in a circle with
-- one taken by key).

-- Releases a lease: 'released' (held_us), 'lost' (it had expired), 'not_found' or 'not_owner'; resource names
-- the lease's resource when known. The lock is handed to whoever may have it now.
DROP PROCEDURE IF EXISTS {p}release
$$
CREATE PROCEDURE {p}release(IN p_lock_id VARBINARY(64), IN p_hash INT UNSIGNED, IN p_client VARBINARY(256), IN p_own BIGINT)
proc: BEGIN
    DECLARE v_resource VARBINARY(512);
    DECLARE v_kind VARCHAR(16);
    DECLARE v_status VARCHAR(9);
    DECLARE v_client VARBINARY(256);
    DECLARE v_holder VARBINARY(64);
    DECLARE v_acquired, v_expires, v_now, v_held, v_shared_until BIGINT;
    DECLARE v_queued INT;
    DECLARE v_on_row BOOLEAN DEFAULT FALSE;
    DECLARE v_told, v_bells MEDIUMTEXT CHARACTER SET ascii;
    DECLARE CONTINUE HANDLER FOR NOT FOUND BEGIN END;
    DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
    SET v_now = CAST(UNIX_TIMESTAMP(SYSDATE(6)) * 1000000 AS SIGNED);
    -- An exclusive lease: its row found without a lock, then, when it is live and nobody is queued, one
    -- statement by key (committed by itself; the time it was held comes back as LAST_INSERT_ID).
    SELECT resource, queued INTO v_resource, v_queued
        FROM {p}resources WHERE key_hash = p_hash AND holder = p_lock_id;
    IF v_resource IS NOT NULL THEN
        IF v_queued = 0 THEN
            UPDATE {p}resources SET released = released + 1,
                    hold_ms = hold_ms + CAST(LAST_INSERT_ID(GREATEST(v_now - holder_acquired, 0)) AS SIGNED) DIV 1000,
                    holder = NULL, excl_until = 0
                WHERE resource = v_resource AND holder = p_lock_id AND excl_until > v_now AND queued = 0
                  AND (p_client IS NULL OR holder_client = p_client);
            IF ROW_COUNT() > 0 THEN
                SELECT 'released', v_resource, NULL, NULL, NULL, v_now, NULL, NULL, NULL, LAST_INSERT_ID(), NULL,
                       NULL, NULL, NULL, NULL;
                LEAVE proc;
            END IF;
        END IF;
        START TRANSACTION;
        SELECT holder, holder_kind, holder_client, holder_acquired, excl_until, queued
            INTO v_holder, v_kind, v_client, v_acquired, v_expires, v_queued
            FROM {p}resources WHERE resource = v_resource FOR UPDATE;
        IF v_holder = p_lock_id THEN
            SET v_on_row = TRUE;
        ELSE
            -- It changed hands meanwhile: not this lease's row any more.
            COMMIT;
            SET v_resource = NULL, v_kind = NULL;
        END IF;
    END IF;
    IF NOT v_on_row THEN
        SELECT resource INTO v_resource FROM {p}leases WHERE lock_id = p_lock_id;
        IF v_resource IS NULL THEN
            SELECT 'not_found', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL;
            LEAVE proc;
        END IF;
        START TRANSACTION;
        SELECT queued INTO v_queued FROM {p}resources WHERE resource = v_resource FOR UPDATE;
        SELECT kind, client_id, acquired_us, expires_us INTO v_kind, v_client, v_acquired, v_expires
            FROM {p}leases WHERE lock_id = p_lock_id FOR UPDATE;
    END IF;
    IF v_kind IS NULL OR p_client IS NOT NULL AND v_client <> p_client THEN
        COMMIT;
        SELECT IF(v_kind IS NULL, 'not_found', 'not_owner'), v_resource, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
               NULL, NULL, NULL, NULL, NULL, NULL;
        LEAVE proc;
    END IF;
    SET v_now = CAST(UNIX_TIMESTAMP(SYSDATE(6)) * 1000000 AS SIGNED);
    IF v_expires <= v_now THEN
        SET v_status = 'lost';
    ELSE
        SET v_status = 'released', v_held = GREATEST(v_now - v_acquired, 0);
    END IF;
    IF NOT v_on_row THEN
        DELETE FROM {p}leases WHERE lock_id = p_lock_id;
        SELECT COALESCE(MAX(expires_us), 0) INTO v_shared_until FROM {p}leases
            WHERE resource = v_resource AND expires_us > v_now;
    END IF;
    UPDATE {p}resources SET
            released = released + (v_status = 'released'), expired = expired + (v_status = 'lost'),
            hold_ms = hold_ms + COALESCE(v_held, v_expires - v_acquired) DIV 1000,
            shared_until = COALESCE(v_shared_until, shared_until),
            holder = IF(v_on_row, NULL, holder), excl_until = IF(v_on_row, 0, excl_until)
        WHERE resource = v_resource;
    IF v_queued > 0 THEN
        CALL {p}hand_over(v_resource, v_now, p_own, v_told, v_bells);
    END IF;
    COMMIT;
    SELECT v_status, v_resource, NULL, NULL, NULL, v_now, NULL, NULL, NULL, v_held, NULL, NULL, NULL, v_told,
           v_bells;
END
$$
-- Releases an exclusive lease its caller was handed on p_resource's row (a waiter's grant): the row is locked
-- first, by key, without the look-up by lock id that `release` starts with (a queued resource's release is what
-- its whole queue waits for). Anything else (the lease is not on the row any more, another client's) is
-- `release`'s to judge. Answers as `release`.
DROP PROCEDURE IF EXISTS {p}release_held
$$
CREATE PROCEDURE {p}release_held(IN p_resource VARBINARY(512), IN p_lock_id VARBINARY(64), IN p_hash INT UNSIGNED,
                                 IN p_client VARBINARY(256), IN p_own BIGINT)
proc: BEGIN
    DECLARE v_status VARCHAR(9);
    DECLARE v_client VARBINARY(256);
    DECLARE v_holder VARBINARY(64);
    DECLARE v_acquired, v_expires, v_now, v_held BIGINT;
    DECLARE v_queued INT;
    DECLARE v_told, v_bells MEDIUMTEXT CHARACTER SET ascii;
    DECLARE CONTINUE HANDLER FOR NOT FOUND BEGIN END;
    DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
    START TRANSACTION;
    SELECT holder, holder_client, holder_acquired, excl_until, queued
        INTO v_holder, v_client, v_acquired, v_expires, v_queued
        FROM {p}resources WHERE resource = p_resource FOR UPDATE;
    IF v_holder IS NULL OR v_holder <> p_lock_id OR p_client IS NOT NULL AND v_client <> p_client THEN
        COMMIT;
        CALL {p}release(p_lock_id, p_hash, p_client, p_own);
        LEAVE proc;
    END IF;
    SET v_now = CAST(UNIX_TIMESTAMP(SYSDATE(6)) * 1000000 AS SIGNED);
    IF v_expires <= v_now THEN
        SET v_status = 'lost';
    ELSE
        SET v_status = 'released', v_held = GREATEST(v_now - v_acquired, 0);
    END IF;
    UPDATE {p}resources SET
            released = released + (v_status = 'released'), expired = expired + (v_status = 'lost'),
            hold_ms = hold_ms + COALESCE(v_held, v_expires - v_acquired) DIV 1000, holder = NULL, excl_until = 0
        WHERE resource = p_resource;
    IF v_queued > 0 THEN
        CALL {p}hand_over(p_resource, v_now, p_own, v_told, v_bells);
    END IF;
    COMMIT;
    SELECT v_status, p_resource, NULL, NULL, NULL, v_now, NULL, NULL, NULL, v_held, NULL, NULL, NULL, v_told,
           v_bells;
END
$$
-- Extends a lease by p_ttl_ms from now (null: its own ttl): 'renewed' (the lease's new state), 'capped'
-- (expires_us unchanged), 'lost', 'not_found', 'not_owner'.
DROP PROCEDURE IF EXISTS {p}renew
$$
CREATE PROCEDURE {p}renew(IN p_lock_id VARBINARY(64), IN p_hash INT UNSIGNED, IN p_ttl_ms BIGINT, IN p_client VARBINARY(256))
proc: BEGIN
    DECLARE v_resource VARBINARY(512);
    DECLARE v_holder VARBINARY(64);
    DECLARE v_kind VARCHAR(16);
    DECLARE v_client VARBINARY(256);
    DECLARE v_acquired, v_expires, v_ttl, v_fence, v_max_hold, v_now, v_new BIGINT;
    DECLARE v_renewals, v_max_renewals INT;
    DECLARE v_on_row BOOLEAN DEFAULT FALSE;
    DECLARE CONTINUE HANDLER FOR NOT FOUND BEGIN END;
    DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
    SELECT resource INTO v_resource FROM {p}resources WHERE key_hash = p_hash AND holder = p_lock_id;
    IF v_resource IS NOT NULL THEN
        START TRANSACTION;
        SELECT holder, holder_kind, holder_client, holder_acquired, excl_until, holder_ttl_ms, holder_fence,
               holder_renewals, holder_max_renewals, holder_max_hold_ms
            INTO v_holder, v_kind, v_client, v_acquired, v_expires, v_ttl, v_fence, v_renewals, v_max_renewals,
                 v_max_hold
            FROM {p}resources WHERE resource = v_resource FOR UPDATE;
        IF v_holder = p_lock_id THEN
            SET v_on_row = TRUE;
        ELSE
            COMMIT;
            SET v_resource = NULL, v_kind = NULL;
        END IF;
    END IF;
    IF NOT v_on_row THEN
        SELECT resource INTO v_resource FROM {p}leases WHERE lock_id = p_lock_id;
        IF v_resource IS NULL THEN
            SELECT 'not_found', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL;
            LEAVE proc;
        END IF;
        START TRANSACTION;
        SELECT fence INTO v_fence FROM {p}resources WHERE resource = v_resource FOR UPDATE;
        SELECT kind, client_id, acquired_us, expires_us, ttl_ms, fence, renewals, max_renewals, max_hold_ms
            INTO v_kind, v_client, v_acquired, v_expires, v_ttl, v_fence, v_renewals, v_max_renewals, v_max_hold
            FROM {p}leases WHERE lock_id = p_lock_id FOR UPDATE;
    END IF;
    SET v_now = CAST(UNIX_TIMESTAMP(SYSDATE(6)) * 1000000 AS SIGNED);
    IF v_kind IS NULL OR p_client IS NOT NULL AND v_client <> p_client OR v_expires <= v_now THEN
        COMMIT;
        SELECT CASE WHEN v_kind IS NULL THEN 'not_found' WHEN v_expires > v_now OR p_client IS NOT NULL
                    AND v_client <> p_client THEN 'not_owner' ELSE 'lost' END,
               v_resource, NULL, NULL, NULL, v_now, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL;
        LEAVE proc;
    END IF;
    IF v_max_renewals IS NULL OR v_renewals < v_max_renewals THEN
        SET v_new = v_now + COALESCE(p_ttl_ms, v_ttl) * 1000;
        IF v_max_hold IS NOT NULL THEN
            SET v_new = LEAST(v_new, v_acquired + v_max_hold * 1000);
            IF v_new <= v_now THEN
                SET v_new = NULL;
            END IF;
        END IF;
    END IF;
    IF v_new IS NULL THEN
        COMMIT;
        SELECT 'capped', v_resource, NULL, NULL, NULL, v_now, v_expires, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
               NULL;
        LEAVE proc;
    END IF;
    SET v_ttl = COALESCE(p_ttl_ms, v_ttl), v_renewals = v_renewals + 1;
    IF v_on_row THEN
        UPDATE {p}resources SET excl_until = v_new, holder_ttl_ms = v_ttl, holder_renewals = v_renewals
            WHERE resource = v_resource;
    ELSE
        UPDATE {p}leases SET expires_us = v_new, ttl_ms = v_ttl, renewals = v_renewals WHERE lock_id = p_lock_id;
        UPDATE {p}resources SET shared_until = GREATEST(shared_until, v_new),
                intent_until = IF(v_kind LIKE 'intent-%', GREATEST(intent_until, v_new), intent_until)
            WHERE resource = v_resource;
    END IF;
    COMMIT;
    SELECT 'renewed', v_resource, v_kind, v_client, v_fence, v_now, v_new, NULL, NULL, NULL, v_acquired, v_ttl,
           v_renewals, NULL, NULL;
END
$$
-- Housekeeping of one resource: forgets leases and waiters that ended before p_before (counting the leases as
-- expired), and the resource itself once it is idle and its fence is older than p_before (its counters go to
-- the totals; the next fence, seeded from the clock, is still larger).
DROP PROCEDURE IF EXISTS {p}sweep_one
$$
CREATE PROCEDURE {p}sweep_one(IN p_resource VARBINARY(512), IN p_before BIGINT)
proc: BEGIN
    DECLARE v_fence, v_excl_until, v_shared_until, v_released, v_expired, v_hold BIGINT;
    DECLARE v_queued, v_dead INT;
    DECLARE CONTINUE HANDLER FOR NOT FOUND BEGIN END;
    DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
    START TRANSACTION;
    SELECT fence, excl_until, shared_until, queued INTO v_fence, v_excl_until, v_shared_until, v_queued
        FROM {p}resources WHERE resource = p_resource FOR UPDATE;
    IF v_fence IS NULL THEN
        COMMIT;
        LEAVE proc;
    END IF;
    UPDATE {p}resources r,
           (SELECT COUNT(*) AS n, COALESCE(SUM(expires_us - acquired_us), 0) DIV 1000 AS ms FROM {p}leases
             WHERE resource = p_resource AND expires_us < p_before) g
        SET r.expired = r.expired + g.n, r.hold_ms = r.hold_ms + g.ms
        WHERE r.resource = p_resource AND g.n > 0;
    DELETE FROM {p}leases WHERE resource = p_resource AND expires_us < p_before;
    UPDATE {p}resources SET expired = expired + 1, hold_ms = hold_ms + (excl_until - holder_acquired) DIV 1000,
            holder = NULL, excl_until = 0
        WHERE resource = p_resource AND holder IS NOT NULL AND excl_until < p_before;
    DELETE FROM {p}waiters WHERE resource = p_resource AND deadline_us < p_before;
    SET v_dead = ROW_COUNT();
    IF v_dead > 0 THEN
        UPDATE {p}resources SET queued = queued - v_dead WHERE resource = p_resource;
    END IF;
    IF v_queued - v_dead <= 0 AND v_fence < p_before AND v_excl_until < p_before AND v_shared_until < p_before
       AND NOT EXISTS (SELECT 1 FROM {p}resources WHERE resource = p_resource AND holder IS NOT NULL)
       AND NOT EXISTS (SELECT 1 FROM {p}leases WHERE resource = p_resource)
       AND NOT EXISTS (SELECT 1 FROM {p}waiters WHERE resource = p_resource) THEN
        SELECT released, expired, hold_ms INTO v_released, v_expired, v_hold
            FROM {p}resources WHERE resource = p_resource;
        UPDATE {p}totals SET released = released + v_released, expired = expired + v_expired,
                hold_ms = hold_ms + v_hold
            WHERE id = 1;
        DELETE FROM {p}resources WHERE resource = p_resource;
    END IF;
    COMMIT;
END
