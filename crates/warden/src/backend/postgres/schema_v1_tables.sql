-- warden's PostgreSQL schema, version 1. `{p}` is the table prefix (default `warden_`).
-- Times are microseconds since the Unix epoch on the database server's clock: every process agrees on them.
-- The tables; the functions that work on them are in schema_v1_functions.sql.

CREATE TABLE IF NOT EXISTS {p}resources (
    resource text PRIMARY KEY,
    -- The last fencing token granted; the next is greatest(fence + 1, now): it grows even after a restore.
    fence bigint NOT NULL DEFAULT 0,
    -- Who holds it, kept on the row every operation locks anyway, so the common path reads no other table:
    -- the exclusive holder's lock id and expiry, the latest expiry among shared holders, the queue's length.
    holder text,
    holder_until bigint NOT NULL DEFAULT 0,
    shared_until bigint NOT NULL DEFAULT 0,
    queued integer NOT NULL DEFAULT 0,
    -- Counters of ended leases (grants = ended + live).
    released bigint NOT NULL DEFAULT 0,
    expired bigint NOT NULL DEFAULT 0,
    hold_ms bigint NOT NULL DEFAULT 0
);

-- A lease is held while expires_us > now. An expired row stays (renew and release report the loss) until the
-- sweep removes it a retention period later.
CREATE TABLE IF NOT EXISTS {p}leases (
    lock_id text PRIMARY KEY,
    resource text NOT NULL,
    kind text NOT NULL,
    client_id text NOT NULL,
    acquired_us bigint NOT NULL,
    expires_us bigint NOT NULL,
    ttl_ms bigint NOT NULL,
    fence bigint NOT NULL,
    renewals integer NOT NULL DEFAULT 0,
    max_renewals integer,
    max_hold_ms bigint
);
-- Only shared leases are found by resource (an exclusive one is named by its resource's row): every index is
-- paid on each grant. Views by client and the sweep read the table through.
CREATE INDEX IF NOT EXISTS {p}leases_shared ON {p}leases (resource, expires_us) WHERE kind IN ('shared', 'read');

-- FIFO queues: a waiter stays while its deadline (its waiter lease, refreshed by each attempt) is ahead.
CREATE TABLE IF NOT EXISTS {p}waiters (
    resource text NOT NULL,
    waiter_id text NOT NULL,
    seq bigserial,
    client_id text NOT NULL,
    kind text NOT NULL,
    ttl_ms bigint NOT NULL,
    deadline_us bigint NOT NULL,
    PRIMARY KEY (resource, waiter_id)
);
CREATE INDEX IF NOT EXISTS {p}waiters_order ON {p}waiters (resource, seq);

-- Counters of resources the sweep forgot (idle, past their fence): statistics stay cumulative.
CREATE TABLE IF NOT EXISTS {p}totals (
    id integer PRIMARY KEY CHECK (id = 1),
    released bigint NOT NULL DEFAULT 0,
    expired bigint NOT NULL DEFAULT 0,
    hold_ms bigint NOT NULL DEFAULT 0
);
INSERT INTO {p}totals (id) VALUES (1) ON CONFLICT DO NOTHING;

-- What the lease operations answer (each sets the fields its caller reads; see schema_v1_functions.sql).
CREATE TYPE {p}reply AS (
    status text, resource text, kind text, client text, fence bigint, now_us bigint, expires_us bigint,
    remaining_us bigint, retry_us bigint, held_us bigint, acquired_us bigint, ttl_ms bigint, renewals integer
);
