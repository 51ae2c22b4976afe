-- Schema version 6: where each queue's live waiters begin. `{p}` is the table prefix. A queue is a table rows
-- join and leave all the time; InnoDB keeps a deleted row's index entry until its purge runs, which lags under
-- load, and a search for the head from the start of the resource's range steps over every such entry (measured:
-- 25 µs with none, 265 µs with 3,000). head_place is at most the place of every waiter of the resource (a
-- joining waiter lowers it, a handover raises it to where its scan stopped), so the searches start there. The
-- default, the lowest place, makes them search from the start as before. The procedures are installed again
-- after this (they read the new column).
ALTER TABLE {p}resources ADD COLUMN head_place BIGINT NOT NULL DEFAULT -9223372036854775807
