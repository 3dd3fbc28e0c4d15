-- Moderation for UGC events: blocklists, per-user blocks, events, the messages the bot keeps per
-- job (approval cards, audit entries), and who decided on a job.

-- Prompt rules: a word matches whole words, case-insensitively; a regex is Python `re` syntax.
CREATE TABLE blocklist (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id   TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('word', 'regex')),
    pattern    TEXT NOT NULL,
    added_by   TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    UNIQUE (guild_id, kind, pattern)
);

CREATE TABLE user_blocks (
    guild_id   TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    reason     TEXT NOT NULL DEFAULT '',
    blocked_by TEXT NOT NULL DEFAULT '',
    at         REAL NOT NULL,
    PRIMARY KEY (guild_id, user_id)
);

-- An event: its own per-user credits (quota_limits scope 'event'), moderation mode and gallery.
CREATE TABLE events (
    id               TEXT PRIMARY KEY,
    guild_id         TEXT NOT NULL,
    name             TEXT NOT NULL,
    channel_id       TEXT NOT NULL,
    thread_id        TEXT,
    ends_at          REAL NOT NULL,
    credits_per_user INTEGER NOT NULL,
    moderation       TEXT NOT NULL DEFAULT 'off'
                     CHECK (moderation IN ('off', 'prompts', 'results', 'both')),
    state            TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed')),
    created_by       TEXT NOT NULL DEFAULT '',
    created_at       REAL NOT NULL,
    closed_at        REAL,
    summary_ref      TEXT
);
CREATE INDEX events_guild_state ON events (guild_id, state);

-- Messages posted for a job besides its status and result: written after the post, and looked
-- up before posting, so a restart re-posts nothing (a crash in between is covered by nonces).
CREATE TABLE job_messages (
    job_id     TEXT NOT NULL REFERENCES jobs (id),
    kind       TEXT NOT NULL,                      -- approval | review | audit | ...
    channel_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    at         REAL NOT NULL,
    PRIMARY KEY (job_id, kind)
);

-- Who approved or rejected a job, and whether the user deleted their data.
ALTER TABLE jobs ADD COLUMN moderator_id TEXT;
ALTER TABLE jobs ADD COLUMN forgotten INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_guild_created ON jobs (guild_id, created_at);
CREATE INDEX jobs_event ON jobs (event_id);
