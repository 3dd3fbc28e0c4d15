-- Discord store entitlements (bot/service/premium.py): one row per entitlement id, written
-- before it is consumed at Discord, so a purchase is credited once whatever crashes between.
-- kind: consumable | guild_subscription | user_subscription; state: credited (consumable, not
-- yet consumed at Discord) | consumed | active (subscription) | deleted (refunded or removed).
-- shortfall: purchased credits a refund could not take back (already spent), for the admins.
CREATE TABLE entitlements (
    id          TEXT PRIMARY KEY,
    sku_id      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    guild_id    TEXT NOT NULL,
    credits     INTEGER NOT NULL,
    period      TEXT,
    starts_at   REAL,
    ends_at     REAL,
    state       TEXT NOT NULL,
    shortfall   INTEGER NOT NULL DEFAULT 0,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE INDEX entitlements_user ON entitlements (user_id);
CREATE INDEX entitlements_guild ON entitlements (guild_id);
-- Purchased credits, one line per change: + a purchase (ref: the entitlement), - a refund's
-- claw-back (ref: the entitlement), - a spend (ref: the job), + a spend given back (ref: the
-- job). The key makes each change happen once; a member's balance is the sum of their lines.
CREATE TABLE purchased_credits (
    ref     TEXT NOT NULL,
    kind    TEXT NOT NULL,
    user_id TEXT NOT NULL,
    credits INTEGER NOT NULL,
    at      REAL NOT NULL,
    PRIMARY KEY (ref, kind)
);
CREATE INDEX purchased_credits_user ON purchased_credits (user_id);
