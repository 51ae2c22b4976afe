-- Schema version 5: waiter priorities. `{p}` is the table prefix. A waiter's place in its queue is the clock (µs)
-- when it joined less its priority's head start (100 ms per level: the library's PRIORITY_STEP); the queue goes
-- by place, then by arrival (seq). Waiters queued by an earlier version get place 0: they stay ahead. The
-- functions that read the queue are installed again after this.

ALTER TABLE {p}waiters ADD COLUMN IF NOT EXISTS place bigint NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS {p}waiters_place ON {p}waiters (resource, place, seq);
DROP INDEX IF EXISTS {p}waiters_order;
