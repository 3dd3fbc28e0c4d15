-- Gateway fleet (issue 14). A job that may fail over keeps its ordered gateways and why it
-- moved, as JSON: {"order": [...], "moves": [...], "note": "...", "waiting_since": t}.
ALTER TABLE jobs ADD COLUMN fleet TEXT NOT NULL DEFAULT '{}';

-- Each gateway account's health, shared by every process (bot/store/fleet.py): its circuit
-- (closed, open, half_open) with the database's clock, the adaptive concurrency (NULL: the
-- configured ceiling) and the last error, scrubbed of secrets.
CREATE TABLE gateway_health (
    provider      TEXT PRIMARY KEY,
    circuit       TEXT NOT NULL DEFAULT 'closed',
    failures      INTEGER NOT NULL DEFAULT 0,
    opened_at     REAL,
    probe_until   REAL,
    effective     INTEGER,
    successes     INTEGER NOT NULL DEFAULT 0,
    decreased_at  REAL,
    last_error    TEXT,
    last_error_at REAL
);
