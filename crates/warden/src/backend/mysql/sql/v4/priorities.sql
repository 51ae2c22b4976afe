-- Schema version 4: waiter priorities. `{p}` is the table prefix. A waiter's place in its queue is the clock (µs)
-- when it joined less its priority's head start (100 ms per level: the library's PRIORITY_STEP); the queue goes
-- by place, then by arrival (seq). Waiters queued by an earlier version get place 0: they stay ahead. The
-- procedures are installed again after this (they read the new column).
ALTER TABLE {p}waiters ADD COLUMN place BIGINT NOT NULL DEFAULT 0, ADD KEY waiters_place (resource, place, seq),
    DROP KEY waiters_order
