-- Admission (Store.create_job) counts, inside the enqueue transaction, a member's waiting jobs
-- in a guild and the jobs they created there in the last minute: without these, both counts
-- scan every job the member ever asked for.
CREATE INDEX jobs_member_state ON jobs (guild_id, user_id, state);
CREATE INDEX jobs_member_created ON jobs (guild_id, user_id, created_at);
