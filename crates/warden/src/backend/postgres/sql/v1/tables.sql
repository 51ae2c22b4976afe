-- warden's PostgreSQL schema, version 1. `{p}` is the table prefix (default `warden_`).
-- Times are microseconds since the Unix epoch on the database server's clock: every process agrees on them.
-- The tables (and the clock); the functions that work on them are in the other files of this version.

CREATE TABLE IF NOT EXISTS {p}resources (
    resource text PRIMARY KEY,
    -- A 32-bit hash of the name, which lock ids end with: how a release or renewal finds the row.
    key_hash integer NOT NULL,
    -- The last fencing token granted; the next is greatest(fence + 1, now): it grows even after a restore.
    fence bigint NOT NULL DEFAULT 0,
    -- The exclusive (or write) lease, kept on the row every operation locks anyway: a grant and a release are
    -- one UPDATE each. Held while holder_until > now; an ended one stays until the next grant or the sweep.
    holder text,
    holder_kind text,
    holder_client text,
    holder_acquired bigint,
    holder_until bigint NOT NULL DEFAULT 0,
    holder_ttl_ms bigint,
    holder_fence bigint,
    holder_renewals integer NOT NULL DEFAULT 0,
    holder_max_renewals integer,
    holder_max_hold_ms bigint,
    -- What the last release of the exclusive lease found: how long it was held (µs), or -1 if it had expired.
    last_release_us bigint,
    -- The latest expiry among shared (and read) leases, which live in {p}leases; the queue's length.
    shared_until bigint NOT NULL DEFAULT 0,
    queued integer NOT NULL DEFAULT 0,
    -- Counters of ended leases.
    released bigint NOT NULL DEFAULT 0,
    expired bigint NOT NULL DEFAULT 0,
    hold_ms bigint NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS {p}resources_hash ON {p}resources (key_hash);

-- Shared and read leases. One is held while expires_us > now; an expired row stays (renew and release report
-- the loss) until the sweep removes it a retention period later.
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
CREATE INDEX IF NOT EXISTS {p}leases_resource ON {p}leases (resource, expires_us);

-- Queues (version 5 adds each waiter's place): a waiter stays while its deadline (its waiter lease, refreshed by each attempt) is ahead.
CREATE TABLE IF NOT EXISTS {p}waiters (
    resource text NOT NULL,
    waiter_id text NOT NULL,
    seq bigserial,
    client_id text NOT NULL,
    kind text NOT NULL,
    ttl_ms bigint NOT NULL,
    deadline_us bigint NOT NULL,
    -- The waiting acquire's lock id and caps, so that a release can hand the lock over in its own transaction.
    lock_id text,
    max_renewals integer,
    max_hold_ms bigint,
    waiter_lease_ms bigint NOT NULL,
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

-- What the lease operations answer (each sets the fields its caller reads).
CREATE TYPE {p}reply AS (
    status text, resource text, kind text, client text, fence bigint, now_us bigint, expires_us bigint,
    remaining_us bigint, retry_us bigint, held_us bigint, acquired_us bigint, ttl_ms bigint, renewals integer,
    handed text
);

CREATE OR REPLACE FUNCTION {p}now_us() RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
$$;
