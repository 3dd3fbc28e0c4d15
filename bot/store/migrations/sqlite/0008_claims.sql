-- Many processes, one queue. A job in an active state is driven by one process at a time: its
-- `owner`, until `lease_until` (the database's clock), renewed while the owner lives. When the
-- lease runs out (the owner died), any process takes the job over and resumes it from its row.
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until REAL;
-- A person asked to cancel a job another process drives: that process stops it.
ALTER TABLE jobs ADD COLUMN cancel_requested TEXT;
CREATE INDEX jobs_owner ON jobs (owner) WHERE owner IS NOT NULL;
-- The queue place a waiting job was last told (by any process), so a move is announced once.
ALTER TABLE jobs ADD COLUMN told_position INTEGER;

-- News of a task that reached a process other than the job's owner (a gateway's callback):
-- kept here for the owner to read, in order, then deleted.
CREATE TABLE job_updates (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    state  TEXT NOT NULL,                  -- the TaskState, as JSON (bot/models.py)
    at     REAL NOT NULL
);
CREATE INDEX job_updates_job ON job_updates (job_id, id);

-- Who was served last by the fair queue (bot/engine/scheduler.py), for every process and
-- across restarts: the round-robin between servers (scope 'guild', key the server) and
-- members (scope 'user', key "server:member"), stamped with the scheduler's tick.
CREATE TABLE fair_served (
    scope TEXT NOT NULL,
    key   TEXT NOT NULL,
    tick  INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
