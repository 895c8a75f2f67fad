-- DumpFleet schema, version 2: resumable upload sessions.
-- A session holds what a client announced (the dump's SHA-256 and size, the VM it came from)
-- while its LZ4-compressed bytes arrive in the coordinator's incoming folder, possibly over
-- several connections. Announcing the same dump from the same VM and host again returns the
-- open session, which is how an interrupted upload resumes; the bytes on disk say how far it got.
CREATE TABLE upload_sessions (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    sha256      text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size        bigint      NOT NULL CHECK (size >= 0),
    vm_name     text        NOT NULL,
    host        text        NOT NULL DEFAULT '',
    tags        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    file_name   text,
    uploaded_by text,
    state       text        NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'stored', 'rejected')),
    error       text,
    dump_id     bigint      REFERENCES dumps (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX upload_sessions_open ON upload_sessions (sha256, vm_name, host) WHERE state = 'open';

ALTER TABLE uploads ADD COLUMN file_name text;
