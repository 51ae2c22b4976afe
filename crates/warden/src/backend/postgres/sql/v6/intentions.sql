-- Schema version 6: intention kinds ('intent-shared', 'intent-exclusive'), held in {p}leases beside shared ones.
-- `{p}` is the table prefix. A resource's row keeps the latest expiry of its intention leases, so that a shared
-- acquire on a resource no intention ever touched pays nothing. The functions are installed again after this.

ALTER TABLE {p}resources ADD COLUMN IF NOT EXISTS intent_until bigint NOT NULL DEFAULT 0;

-- Whether holders of kinds a and b may hold one resource at once (semaphores aside: they never share a name
-- with a lock): the matrix of multi-granularity locking, shared and read being S, exclusive and write X.
CREATE OR REPLACE FUNCTION {p}compatible(a text, b text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN a IN ('exclusive', 'write') OR b IN ('exclusive', 'write') THEN false
        WHEN a = 'intent-shared' OR b = 'intent-shared' THEN true
        WHEN a = 'intent-exclusive' OR b = 'intent-exclusive' THEN a = b
        ELSE true
    END
$$;

-- Whether a live lease of the resource `r` (its row) excludes a non-exclusive lease of p_kind: shared (and read)
-- and intent-exclusive exclude each other.
CREATE OR REPLACE FUNCTION {p}rivals(r {p}resources, p_kind text, p_now bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF p_kind IN ('shared', 'read') THEN
        RETURN r.intent_until > p_now AND EXISTS (SELECT 1 FROM {p}leases WHERE resource = r.resource
            AND expires_us > p_now AND kind = 'intent-exclusive');
    ELSIF p_kind = 'intent-exclusive' THEN
        RETURN r.shared_until > p_now AND EXISTS (SELECT 1 FROM {p}leases WHERE resource = r.resource
            AND expires_us > p_now AND kind IN ('shared', 'read'));
    END IF;
    RETURN false;
END
$$;
