-- A command's claim remembers a hash of its body and where it came from,
-- so that its key arriving again with another body is reported as a
-- conflict naming the earlier command instead of being taken for a
-- duplicate. Events (whose ids derive from their cause) and claims older
-- than this migration have none, and compare as duplicates as before.
ALTER TABLE inbox ADD COLUMN body_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE inbox ADD COLUMN ref TEXT NOT NULL DEFAULT '';
