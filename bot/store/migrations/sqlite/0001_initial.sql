-- Jobs, their audit trail, the credits ledger, quota limits, guild settings and ETA history.
-- Times are unix seconds (UTC). JSON columns hold pydantic dumps or plain dicts.

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,             -- uuid4; also the provider idempotency key
    guild_id         TEXT NOT NULL,                -- '' for DMs, 'cli' for the command line
    channel_id       TEXT NOT NULL DEFAULT '',
    user_id          TEXT NOT NULL,
    role_ids         TEXT NOT NULL DEFAULT '[]',
    request          TEXT NOT NULL,                -- GenerationRequest.model_dump_json()
    provider         TEXT NOT NULL,
    model            TEXT,
    state            TEXT NOT NULL,
    seq              INTEGER NOT NULL,             -- queue order; kept across retries
    not_before       REAL NOT NULL DEFAULT 0,      -- a retried job waits until this time
    task_id          TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    audio_retried    INTEGER NOT NULL DEFAULT 0,
    hold_result      INTEGER NOT NULL DEFAULT 0,   -- post only after a moderator approves
    credits_estimate INTEGER NOT NULL DEFAULT 0,
    credits_charged  INTEGER NOT NULL DEFAULT 0,
    result_path      TEXT,
    last_frame_path  TEXT,
    result_meta      TEXT NOT NULL DEFAULT '{}',   -- seed, cost, urls, expires_at
    delivery_ref     TEXT,
    error_kind       TEXT,
    error_message    TEXT,
    context          TEXT NOT NULL DEFAULT '{}',   -- opaque to the engine (delivery layer's)
    event_id         TEXT,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    started_at       REAL,
    finished_at      REAL
);
CREATE INDEX jobs_state_seq ON jobs (state, seq);
CREATE INDEX jobs_guild_state ON jobs (guild_id, state);
CREATE INDEX jobs_user ON jobs (user_id, guild_id);

CREATE TABLE job_transitions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     TEXT NOT NULL REFERENCES jobs (id),
    from_state TEXT,
    to_state   TEXT NOT NULL,
    at         REAL NOT NULL,
    detail     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX job_transitions_job ON job_transitions (job_id, id);

-- Balances derive from this table only. One reserve per job, then at most one commit or release
-- of the same amount. `reserved_at` puts a commit/release in the window of its reservation.
CREATE TABLE ledger (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      TEXT NOT NULL REFERENCES jobs (id),
    user_id     TEXT NOT NULL,
    guild_id    TEXT NOT NULL,
    event_id    TEXT,
    kind        TEXT NOT NULL CHECK (kind IN ('reserve', 'commit', 'release')),
    credits     INTEGER NOT NULL CHECK (credits >= 0),
    at          REAL NOT NULL,
    reserved_at REAL NOT NULL
);
CREATE UNIQUE INDEX ledger_one_reserve ON ledger (job_id) WHERE kind = 'reserve';
CREATE UNIQUE INDEX ledger_one_settlement ON ledger (job_id) WHERE kind IN ('commit', 'release');
CREATE INDEX ledger_user_window ON ledger (guild_id, user_id, reserved_at);
CREATE INDEX ledger_event ON ledger (event_id, user_id);

-- subject_id: a user id, a role id or an event id; '' means the guild-wide default of the scope.
-- credits < 0 means unlimited.
CREATE TABLE quota_limits (
    scope      TEXT NOT NULL CHECK (scope IN ('user', 'guild', 'role', 'event')),
    guild_id   TEXT NOT NULL,
    subject_id TEXT NOT NULL DEFAULT '',
    credits    INTEGER NOT NULL,
    window     TEXT NOT NULL CHECK (window IN ('day', 'month', 'event')),
    updated_at REAL NOT NULL,
    PRIMARY KEY (scope, guild_id, subject_id)
);

CREATE TABLE guild_settings (
    guild_id   TEXT PRIMARY KEY,
    settings   TEXT NOT NULL DEFAULT '{}',
    updated_at REAL NOT NULL
);

CREATE TABLE gateway_durations (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    provider   TEXT NOT NULL,
    resolution TEXT NOT NULL,
    duration   INTEGER NOT NULL,
    seconds    REAL NOT NULL,
    at         REAL NOT NULL
);
CREATE INDEX gateway_durations_key ON gateway_durations (provider, resolution, duration, id);
