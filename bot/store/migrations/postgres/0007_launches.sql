-- A /video being prepared (files downloading, checks running) holds its place in the member's
-- per-minute rate from the gate on, so two quick requests can't both pass a limit of one, in
-- any process. Dropped once the job's row exists (or the request was refused); a launch older
-- than a minute no longer counts, so one a crash left behind expires by itself.
CREATE TABLE launches (
    id       TEXT PRIMARY KEY,
    guild_id TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    at       DOUBLE PRECISION NOT NULL
);
CREATE INDEX launches_user ON launches (guild_id, user_id, at);
