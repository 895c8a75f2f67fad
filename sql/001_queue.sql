-- DumpFleet schema, version 1: dumps and their uploads, the job queue with its attempts log,
-- and what analysis stores (reports and signatures). Migrations are numbered and forward-only;
-- `dumpfleet migrate` (and the coordinator on start) applies the ones a database lacks.

-- One row per distinct dump content; the blob store holds the bytes under the SHA-256.
CREATE TABLE dumps (
    id            bigserial PRIMARY KEY,
    sha256        text        NOT NULL UNIQUE CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size          bigint      NOT NULL CHECK (size >= 0),
    dump_type     integer,
    machine       text,
    build         integer,
    bugcheck_code bigint,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- One row per upload: the same dump may arrive from many VMs or twice from one.
CREATE TABLE uploads (
    id          bigserial PRIMARY KEY,
    dump_id     bigint      NOT NULL REFERENCES dumps (id),
    vm_name     text        NOT NULL,
    host        text,
    tags        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    uploaded_by text,
    uploaded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX uploads_by_dump ON uploads (dump_id);
CREATE INDEX uploads_by_vm ON uploads (vm_name);

CREATE TYPE job_state AS ENUM ('queued', 'running', 'done', 'failed');

-- One job per dump and analyzer version. A claimed job carries a lease: the attempt number and
-- the worker that holds it, which fence every later write, and an expiry on the database clock.
CREATE TABLE jobs (
    id               bigserial PRIMARY KEY,
    dump_id          bigint      NOT NULL REFERENCES dumps (id),
    analyzer_version integer     NOT NULL,
    state            job_state   NOT NULL DEFAULT 'queued',
    priority         integer     NOT NULL DEFAULT 0,
    attempt          integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL DEFAULT 5 CHECK (max_attempts > 0),
    worker_id        text,
    lease_expires_at timestamptz,
    available_at     timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    UNIQUE (dump_id, analyzer_version)
);
CREATE INDEX jobs_claimable ON jobs (priority DESC, available_at, id) WHERE state = 'queued';
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE state = 'running';

-- Append-only: every claim, and how it ended (done, retry, failed, expired).
CREATE TABLE job_attempts (
    id          bigserial PRIMARY KEY,
    job_id      bigint      NOT NULL REFERENCES jobs (id),
    attempt     integer     NOT NULL,
    worker_id   text        NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome     text CHECK (outcome IN ('done', 'retry', 'failed', 'expired')),
    error       text,
    UNIQUE (job_id, attempt)
);

-- The analyze report (CrashReport JSON) and the signature, one per dump; rewritten by reprocessing.
CREATE TABLE reports (
    dump_id          bigint      PRIMARY KEY REFERENCES dumps (id),
    job_id           bigint      NOT NULL REFERENCES jobs (id),
    attempt          integer     NOT NULL,
    analyzer_version integer     NOT NULL,
    report           jsonb       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE signatures (
    dump_id        bigint      PRIMARY KEY REFERENCES dumps (id),
    signature_id   text        NOT NULL,
    bucket         text        NOT NULL,
    bugcheck_class text        NOT NULL,
    features       jsonb       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX signatures_by_id ON signatures (signature_id);
CREATE INDEX signatures_by_bucket ON signatures (bucket);
