-- Credits in use per server, member, event and UTC day: the ledger summed ahead of time, kept in
-- the same transaction as every reservation and release (bot/store/ledger.py). A quota check
-- then reads a few rows instead of summing every ledger line of its window, so reservations
-- cost the same on the first day of a month as on its last. user_id '*' is the whole server,
-- event_id '' is outside any event; day is the UTC day's start, in epoch seconds.
CREATE TABLE usage_days (
    guild_id TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    day      DOUBLE PRECISION NOT NULL,
    credits  INTEGER NOT NULL,
    PRIMARY KEY (guild_id, user_id, event_id, day)
);
INSERT INTO usage_days (guild_id, user_id, event_id, day, credits)
SELECT guild_id, user_id, COALESCE(event_id, ''), FLOOR(reserved_at / 86400) * 86400,
       SUM(CASE kind WHEN 'reserve' THEN credits WHEN 'release' THEN -credits ELSE 0 END)
FROM ledger GROUP BY 1, 2, 3, 4;
INSERT INTO usage_days (guild_id, user_id, event_id, day, credits)
SELECT guild_id, '*', COALESCE(event_id, ''), FLOOR(reserved_at / 86400) * 86400,
       SUM(CASE kind WHEN 'reserve' THEN credits WHEN 'release' THEN -credits ELSE 0 END)
FROM ledger GROUP BY 1, 2, 3, 4;

-- The whole-database lease (0003) gave way to per-job claims (0008): its table goes.
DROP TABLE leases;
