-- DumpFleet schema, version 4: similarity search and clusters.
-- Each signature carries MinHash band keys (Sources/CrashSimilarity/MinHashBands.swift) in an
-- array with a GIN index: "which stored crashes share a band with this one" is an index scan,
-- and only those candidates are scored exactly.
-- `fingerprint` is what the similarity model compares, as one line of text (CrashSimilarity's
-- Fingerprint), so candidates are scored without decoding their JSON.
ALTER TABLE signatures ADD COLUMN bands bigint[] NOT NULL DEFAULT '{}';
ALTER TABLE signatures ADD COLUMN fingerprint text;
CREATE INDEX signatures_bands ON signatures USING gin (bands);

-- Clusters keep their ids as data grows: a new crash joins the best cluster above the threshold
-- or starts one. Operators merge (the merged cluster points at the one it joined) and split
-- (the moved dumps are pinned, so reprocessing leaves them where the operator put them).
CREATE TABLE clusters (
    id                     bigserial   PRIMARY KEY,
    representative_dump_id bigint      REFERENCES dumps (id),
    merged_into            bigint      REFERENCES clusters (id),
    title                  text,
    created_at             timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cluster_members (
    dump_id     bigint      PRIMARY KEY REFERENCES dumps (id),
    cluster_id  bigint      NOT NULL REFERENCES clusters (id),
    score       real        NOT NULL,
    pinned      boolean     NOT NULL DEFAULT false,
    assigned_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cluster_members_by_cluster ON cluster_members (cluster_id);

-- A few members per cluster that a new crash is compared with: the one that founded it, and
-- members that joined with a score below 0.9 (the cluster's variants), at most 8. Clustering
-- scores exemplars, not every member, so its cost does not grow with the clusters' sizes.
CREATE TABLE cluster_exemplars (
    dump_id     bigint   PRIMARY KEY REFERENCES dumps (id),
    cluster_id  bigint   NOT NULL REFERENCES clusters (id),
    fingerprint text     NOT NULL,
    bands       bigint[] NOT NULL
);
CREATE INDEX cluster_exemplars_bands ON cluster_exemplars USING gin (bands);
CREATE INDEX cluster_exemplars_by_cluster ON cluster_exemplars (cluster_id);

-- What a dump had loaded and running, for correlations: which modules, driver versions
-- (module@timestamp) and processes are over-represented in a cluster.
CREATE TABLE dump_attributes (
    dump_id bigint NOT NULL REFERENCES dumps (id),
    kind    text   NOT NULL CHECK (kind IN ('module', 'driver', 'process')),
    value   text   NOT NULL,
    PRIMARY KEY (dump_id, kind, value)
);
CREATE INDEX dump_attributes_by_value ON dump_attributes (kind, value);
