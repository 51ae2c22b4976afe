-- Schema version 2: semaphores. `{p}` is the table prefix. A semaphore's kind carries its permits
-- ('semaphore:1000' at most: 14 characters), and a resource's row keeps the permits of the semaphore it is in
-- use as (0: a lock). The procedures are installed again after this (they read the new column).
ALTER TABLE {p}resources MODIFY holder_kind VARCHAR(16) CHARACTER SET ascii NULL,
    ADD COLUMN permits INT NOT NULL DEFAULT 0
$$
ALTER TABLE {p}leases MODIFY kind VARCHAR(16) CHARACTER SET ascii NOT NULL
$$
ALTER TABLE {p}waiters MODIFY kind VARCHAR(16) CHARACTER SET ascii NOT NULL
