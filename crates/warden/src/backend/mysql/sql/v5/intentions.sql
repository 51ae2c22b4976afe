-- Schema version 5: intention kinds ('intent-shared', 'intent-exclusive'), held in {p}leases beside shared ones.
-- `{p}` is the table prefix. A resource's row keeps the latest expiry of its intention leases, so that a shared
-- acquire on a resource no intention ever touched looks no further. The procedures are installed again after this.
ALTER TABLE {p}resources ADD COLUMN intent_until BIGINT NOT NULL DEFAULT 0
