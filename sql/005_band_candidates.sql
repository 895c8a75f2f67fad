-- DumpFleet schema, version 5: candidate lookups that always use the band-key GIN indexes.
-- PostgreSQL estimates `bands && $keys` badly: band keys are nearly unique, so ANALYZE keeps no
-- most-common-element statistics, and each of the 24 keys is then assumed to match 0.5% of the
-- rows (about 11% for the array). With that estimate and a LIMIT the planner prefers a
-- sequential scan that compares every row's 24 keys with the query's 24: 8 ms over 6,000
-- exemplars, 260 ms over 200,000 signatures, where the index answers in 0.1 ms. A function's
-- SET clause scopes `enable_seqscan = off` to the one query inside it, which leaves the index
-- as the only plan and changes nothing else in the session.

-- Stored crashes that share a band with `keys`, `excluded` left out: similar-crash search.
CREATE FUNCTION signature_candidates(keys bigint[], excluded bigint, most integer)
RETURNS TABLE (dump_id bigint, fingerprint text)
LANGUAGE sql STABLE ROWS 400 SET enable_seqscan = off
AS $$ SELECT s.dump_id, s.fingerprint FROM signatures s WHERE s.bands && keys AND s.dump_id <> excluded LIMIT most $$;

-- Cluster exemplars that share a band with `keys`: where a new crash may belong.
CREATE FUNCTION exemplar_candidates(keys bigint[], excluded bigint, most integer)
RETURNS TABLE (dump_id bigint, cluster_id bigint)
LANGUAGE sql STABLE ROWS 50 SET enable_seqscan = off
AS $$ SELECT e.dump_id, e.cluster_id FROM cluster_exemplars e WHERE e.bands && keys AND e.dump_id <> excluded LIMIT most $$;

-- A GIN index normally queues new entries in a pending list that every search reads in full
-- until VACUUM or a 4 MB overflow merges it. Exemplars are few, change often and are searched
-- for every crash placed, so their index takes entries directly.
ALTER INDEX cluster_exemplars_bands SET (fastupdate = off);
