-- Schema version 8: where each queue's live waiters begin. `{p}` is the table prefix. A queue is a table rows
-- join and leave all the time; a deleted row's index entry stays until vacuum removes it, and a search for the
-- head from the start of the resource's range steps over every such entry. head_place is at most the place of
-- every waiter of the resource (a joining waiter lowers it, a handover raises it to the first waiter it left
-- queued), so the searches start there. The default, the lowest place, makes them search from the start as
-- before. The functions that read the queue are installed again after this.

ALTER TABLE {p}resources ADD COLUMN IF NOT EXISTS head_place bigint NOT NULL DEFAULT -9223372036854775807;
