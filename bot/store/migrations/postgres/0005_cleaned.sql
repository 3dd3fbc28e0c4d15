-- When retention removed a finished job's files (its folder, its input copies, the provider's
-- copy). Retention visits each finished job once; NULL means not yet.
ALTER TABLE jobs ADD COLUMN cleaned_at DOUBLE PRECISION;
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE cleaned_at IS NULL;
