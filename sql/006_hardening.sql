-- DumpFleet schema, version 6: limits and recovery that a hostile review asked for.

-- Upload sessions expire when nothing arrives for a while (their bytes are deleted), and count
-- against the quota of the token that announced them. `received` is how many compressed bytes a
-- session holds and `decoded` what they decode to, kept as they grow (the disk is promised the
-- rest of `size`); `updated_at` is its last activity.
ALTER TABLE upload_sessions DROP CONSTRAINT upload_sessions_state_check;
ALTER TABLE upload_sessions ADD CONSTRAINT upload_sessions_state_check
    CHECK (state IN ('open', 'stored', 'rejected', 'expired'));
ALTER TABLE upload_sessions ADD COLUMN received bigint NOT NULL DEFAULT 0 CHECK (received >= 0);
ALTER TABLE upload_sessions ADD COLUMN decoded bigint NOT NULL DEFAULT 0 CHECK (decoded >= 0);
CREATE INDEX upload_sessions_open_by_owner ON upload_sessions (uploaded_by) WHERE state = 'open';
CREATE INDEX upload_sessions_open_by_activity ON upload_sessions (updated_at) WHERE state = 'open';

-- A stored blob whose bytes a worker found damaged. The dump is no longer "known": the next
-- upload of the same content is taken, replaces the blob (`blob_replaced_at`), and queues the
-- dump's failed jobs again.
ALTER TABLE dumps ADD COLUMN blob_damaged_at timestamptz;
ALTER TABLE dumps ADD COLUMN blob_error text;
ALTER TABLE dumps ADD COLUMN blob_replaced_at timestamptz;

-- An attempt a worker gave back because of its own setup (a token the coordinator refuses, a
-- full scratch disk): it does not count against the job.
ALTER TABLE job_attempts DROP CONSTRAINT job_attempts_outcome_check;
ALTER TABLE job_attempts ADD CONSTRAINT job_attempts_outcome_check
    CHECK (outcome IN ('done', 'retry', 'failed', 'expired', 'given back'));

-- The uploads of a dump are read a page at a time, in id order.
DROP INDEX uploads_by_dump;
CREATE INDEX uploads_by_dump ON uploads (dump_id, id);

-- How many uploads a dump has, kept by triggers (statement-level, so a bulk insert costs one
-- update per dump), so that showing a dump sent from a million VMs does not count them.
ALTER TABLE dumps ADD COLUMN upload_count bigint NOT NULL DEFAULT 0;
UPDATE dumps d SET upload_count = counted.n
FROM (SELECT dump_id, count(*) AS n FROM uploads GROUP BY dump_id) counted WHERE counted.dump_id = d.id;

CREATE FUNCTION dumps_count_uploads() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE dumps d SET upload_count = d.upload_count + added.n
        FROM (SELECT dump_id, count(*) AS n FROM new_uploads GROUP BY dump_id) added WHERE added.dump_id = d.id;
    ELSE
        UPDATE dumps d SET upload_count = d.upload_count - removed.n
        FROM (SELECT dump_id, count(*) AS n FROM old_uploads GROUP BY dump_id) removed WHERE removed.dump_id = d.id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER uploads_counted_in AFTER INSERT ON uploads REFERENCING NEW TABLE AS new_uploads
    FOR EACH STATEMENT EXECUTE FUNCTION dumps_count_uploads();
CREATE TRIGGER uploads_counted_out AFTER DELETE ON uploads REFERENCING OLD TABLE AS old_uploads
    FOR EACH STATEMENT EXECUTE FUNCTION dumps_count_uploads();
