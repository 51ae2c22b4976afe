-- Schema version 2: semaphores. `{p}` is the table prefix. A resource's row keeps the permits of the semaphore it is
-- in use as (0: a lock). The functions that read it (acquire, wake-up, handover) are installed again after this.

ALTER TABLE {p}resources ADD COLUMN IF NOT EXISTS permits integer NOT NULL DEFAULT 0;
