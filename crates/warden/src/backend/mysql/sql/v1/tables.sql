-- warden's MySQL/MariaDB schema, version 1. `{p}` is the table prefix (default `warden_`); statements are
-- separated by lines holding only `$$`. Times are microseconds since the Unix epoch on the database server's
-- clock (sessions run in UTC): every process agrees on them. Names and ids are compared byte by byte.

-- One row per resource, locked (by its key) first by every operation on it: the last fencing token (the next is
-- greatest(fence + 1, now), so it grows even after a restore of an older backup); the exclusive (or write)
-- lease, kept on the row every operation locks anyway, so that a grant and a release are one UPDATE each (held
-- while excl_until > now; an ended one stays until the next grant, its release or the sweep); when the latest
-- shared (or read) lease ends; the queue's length; counters of grants and ended leases.
CREATE TABLE IF NOT EXISTS {p}resources (
    resource VARBINARY(512) NOT NULL PRIMARY KEY,
    -- A 32-bit hash of the name, which lock ids end with: how a release or renewal finds the row (read without
    -- locking; rows are only ever locked by their key). It never changes: grants cost no index update.
    key_hash INT UNSIGNED NOT NULL DEFAULT 0,
    fence BIGINT NOT NULL DEFAULT 0,
    holder VARBINARY(64) NULL,
    holder_kind VARCHAR(9) CHARACTER SET ascii NULL,
    holder_client VARBINARY(256) NULL,
    holder_acquired BIGINT NULL,
    excl_until BIGINT NOT NULL DEFAULT 0,
    holder_ttl_ms BIGINT NULL,
    holder_fence BIGINT NULL,
    holder_renewals INT NOT NULL DEFAULT 0,
    holder_max_renewals INT NULL,
    holder_max_hold_ms BIGINT NULL,
    shared_until BIGINT NOT NULL DEFAULT 0,
    queued INT NOT NULL DEFAULT 0,
    grants BIGINT NOT NULL DEFAULT 0,
    released BIGINT NOT NULL DEFAULT 0,
    expired BIGINT NOT NULL DEFAULT 0,
    hold_ms BIGINT NOT NULL DEFAULT 0,
    KEY resources_hash (key_hash)
) ENGINE = InnoDB
$$
-- Shared and read leases. One is held while expires_us > now; an expired row stays (renew and release report
-- the loss) until its release or the sweep, a retention period later.
CREATE TABLE IF NOT EXISTS {p}leases (
    lock_id VARBINARY(64) NOT NULL PRIMARY KEY,
    resource VARBINARY(512) NOT NULL,
    kind VARCHAR(9) CHARACTER SET ascii NOT NULL,
    client_id VARBINARY(256) NOT NULL,
    acquired_us BIGINT NOT NULL,
    expires_us BIGINT NOT NULL,
    ttl_ms BIGINT NOT NULL,
    fence BIGINT NOT NULL,
    renewals INT NOT NULL DEFAULT 0,
    max_renewals INT NULL,
    max_hold_ms BIGINT NULL,
    KEY leases_resource (resource, expires_us),
    KEY leases_client (client_id)
) ENGINE = InnoDB
$$
-- Queues (version 4 adds each waiter's place): a waiter stays while its deadline (its waiter lease, refreshed by each attempt) is ahead. It
-- carries its acquire's lock id and caps, so a release hands the lock over in its own transaction, and the
-- bell (the listening connection) of its process, which that release rings.
CREATE TABLE IF NOT EXISTS {p}waiters (
    seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    resource VARBINARY(512) NOT NULL,
    waiter_id VARBINARY(64) NOT NULL,
    client_id VARBINARY(256) NOT NULL,
    kind VARCHAR(9) CHARACTER SET ascii NOT NULL,
    ttl_ms BIGINT NOT NULL,
    deadline_us BIGINT NOT NULL,
    lock_id VARBINARY(64) NOT NULL,
    max_renewals INT NULL,
    max_hold_ms BIGINT NULL,
    waiter_lease_ms BIGINT NOT NULL,
    bell BIGINT NULL,
    UNIQUE KEY waiters_id (resource, waiter_id),
    KEY waiters_order (resource, seq)
) ENGINE = InnoDB
$$
-- What releases told the waiters of other processes, by bell, until that process's listener reads it.
CREATE TABLE IF NOT EXISTS {p}inbox (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    bell BIGINT NOT NULL,
    msg VARBINARY(200) NOT NULL,
    at_us BIGINT NOT NULL,
    KEY inbox_bell (bell, id)
) ENGINE = InnoDB
$$
-- Counters of resources the sweep forgot (idle, past their fence): statistics stay cumulative.
CREATE TABLE IF NOT EXISTS {p}totals (
    id INT NOT NULL PRIMARY KEY,
    released BIGINT NOT NULL DEFAULT 0,
    expired BIGINT NOT NULL DEFAULT 0,
    hold_ms BIGINT NOT NULL DEFAULT 0
) ENGINE = InnoDB
$$
INSERT IGNORE INTO {p}totals (id) VALUES (1)
$$
DROP FUNCTION IF EXISTS {p}now_us
$$
CREATE FUNCTION {p}now_us() RETURNS BIGINT NOT DETERMINISTIC NO SQL
    RETURN CAST(UNIX_TIMESTAMP(SYSDATE(6)) * 1000000 AS SIGNED)
