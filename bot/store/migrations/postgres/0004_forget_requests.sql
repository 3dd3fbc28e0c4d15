-- A user who deleted their data: their recent ledger lines keep the user id while quotas need
-- it (a month), then take the pseudonym; this row is the reminder, dropped once done.
CREATE TABLE forget_requests (
    user_id      TEXT PRIMARY KEY,
    pseudonym    TEXT NOT NULL,
    requested_at DOUBLE PRECISION NOT NULL
);
