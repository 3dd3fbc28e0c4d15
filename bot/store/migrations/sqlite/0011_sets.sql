-- Result sets (several videos from one task, bot/engine/sets.py): a set that came back short
-- is settled once, in one transaction, as two lines: a commit for the videos that came and a
-- release for the rest. So a job may have one commit and one release, never two of either:
-- bot/store/ledger.py writes a settlement only where the job has none yet.
DROP INDEX ledger_one_settlement;
CREATE UNIQUE INDEX ledger_one_commit ON ledger (job_id) WHERE kind = 'commit';
CREATE UNIQUE INDEX ledger_one_release ON ledger (job_id) WHERE kind = 'release';

-- What results of each gateway and resolution weighed, at the output quality asked for
-- (0: the gateway's default), so the next request can ask for a file that already fits the
-- server's upload limit (bot/engine/sizing.py). Only the latest few per key are kept.
CREATE TABLE result_sizes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    provider   TEXT NOT NULL,
    resolution TEXT NOT NULL,
    quality    INTEGER NOT NULL,
    seconds    REAL NOT NULL,
    bytes      INTEGER NOT NULL,
    at         REAL NOT NULL
);
CREATE INDEX result_sizes_key ON result_sizes (provider, resolution, id);
