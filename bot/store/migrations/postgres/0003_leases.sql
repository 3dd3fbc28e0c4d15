-- Which process drives the jobs of this database. Two bots on one file would both resume the
-- same running jobs; the lease lets only one do it, and hands over when its owner dies.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,               -- host:pid:random, see bot/lease.py
    expires_at DOUBLE PRECISION NOT NULL
);
