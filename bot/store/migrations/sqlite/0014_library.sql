-- The server library (bot/service/library.py): files a server keeps under a name and members
-- pull into /video prompts as @name. The bytes live here, not on a host's disk, so every
-- process on every host can use them. A blob outlives its item while an unfinished job still
-- refers to it (job_library); bot/store/library.py deletes a blob only when neither does.
CREATE TABLE library_blobs (
    id         TEXT PRIMARY KEY,
    data       BLOB NOT NULL,
    size       INTEGER NOT NULL,
    created_at REAL NOT NULL
);

-- One named item of a server. `name_key` is the name in lower case: names are unique per
-- server without regard to case. `state` is 'pending' while the server's moderators have not
-- approved it (a server that reviews prompts), 'ready' once usable.
CREATE TABLE library_items (
    id          TEXT PRIMARY KEY,
    guild_id    TEXT NOT NULL,
    name        TEXT NOT NULL,
    name_key    TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('image', 'video', 'audio')),
    format      TEXT NOT NULL DEFAULT '',
    size        INTEGER NOT NULL,
    seconds     REAL,
    width       INTEGER,
    height      INTEGER,
    description TEXT NOT NULL DEFAULT '',
    owner_id    TEXT NOT NULL,
    blob_id     TEXT NOT NULL REFERENCES library_blobs (id),
    thumb       BLOB,
    state       TEXT NOT NULL DEFAULT 'ready' CHECK (state IN ('pending', 'ready')),
    uses        INTEGER NOT NULL DEFAULT 0,
    decided_by  TEXT,
    created_at  REAL NOT NULL,
    UNIQUE (guild_id, name_key)
);
CREATE INDEX library_items_owner ON library_items (owner_id);

-- A server's asset group on a gateway with an asset API (one per server and gateway), and each
-- item's asset there. Both are written as 'registering' before the gateway is called, so a
-- restart in the middle leaves a visible row instead of a silent second registration.
CREATE TABLE library_groups (
    guild_id   TEXT NOT NULL,
    provider   TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('registering', 'ready')),
    group_id   TEXT,
    at         REAL NOT NULL,
    PRIMARY KEY (guild_id, provider)
);
CREATE TABLE library_assets (
    item_id    TEXT NOT NULL REFERENCES library_items (id) ON DELETE CASCADE,
    provider   TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('registering', 'ready')),
    asset_id   TEXT,
    at         REAL NOT NULL,
    PRIMARY KEY (item_id, provider)
);

-- Which blobs a job's request uses (written when the job is enqueued): the job keeps its copy
-- when the item is removed (a process on another host writes it to disk again from the blob,
-- bot/engine/inputs.py).
CREATE TABLE job_library (
    job_id     TEXT NOT NULL REFERENCES jobs (id),
    blob_id    TEXT NOT NULL,
    path       TEXT NOT NULL,
    PRIMARY KEY (job_id, blob_id)
);
CREATE INDEX job_library_blob ON job_library (blob_id);
