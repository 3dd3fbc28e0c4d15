-- Every process's keeper (bot/engine/claims.py) asks each second which jobs someone asked to
-- cancel. Such a job is rare and active (asking is refused otherwise, and leaving the active
-- states clears it), so this index holds a handful of rows, and the question reads only them
-- instead of every job the process drives.
CREATE INDEX jobs_cancel_requested ON jobs (cancel_requested) WHERE cancel_requested IS NOT NULL;
