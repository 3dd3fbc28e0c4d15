-- Event voting (bot/service/votes.py): one row per member per entry, so a double click or a
-- press delivered twice is one vote (the key), and withdrawing is deleting the row. Votes name
-- the event too, so the standings and the export read one index; the voter index serves
-- "delete my data" (bot/service/privacy.py), which deletes a member's votes.
CREATE TABLE votes (
    job_id   TEXT NOT NULL REFERENCES jobs (id),
    voter_id TEXT NOT NULL,
    event_id TEXT NOT NULL REFERENCES events (id),
    at       DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (job_id, voter_id)
);
CREATE INDEX votes_event ON votes (event_id);
CREATE INDEX votes_voter ON votes (voter_id);
