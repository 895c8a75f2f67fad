-- DumpFleet schema, version 3: dumps are named by their content hash (SHA-256 over the SHA-256
-- digests of their 4 MiB blocks, see Sources/BlobStore/ContentHash.swift), not by the SHA-256
-- of the whole file; the columns say so.
ALTER TABLE dumps RENAME COLUMN sha256 TO content_hash;
ALTER TABLE upload_sessions RENAME COLUMN sha256 TO content_hash;
ALTER TABLE dumps RENAME CONSTRAINT dumps_sha256_key TO dumps_content_hash_key;
ALTER TABLE dumps RENAME CONSTRAINT dumps_sha256_check TO dumps_content_hash_check;
ALTER TABLE upload_sessions RENAME CONSTRAINT upload_sessions_sha256_check TO upload_sessions_content_hash_check;
