-- Version 1: the document model of DESIGN.md section 6, in tables.
--
-- Each table keeps its document as JSONB in `body`, exactly the structs the
-- lifecycle rules read and write, plus copies of the fields that queries
-- filter or sort on. The copies are written in the same statement as the
-- body, so they never disagree with it. Times are seconds since the epoch,
-- as BIGINT everywhere.
--
-- Applied by `schema::migrate` inside one transaction holding an advisory
-- lock; `IF NOT EXISTS` throughout, so re-running it only repairs what is
-- missing.

-- One index per owner: the row every decision about the owner locks.
CREATE TABLE IF NOT EXISTS keypackage_owners (
    owner         TEXT PRIMARY KEY,
    -- The earliest time something in `body` expires; 0 when nothing does.
    next_purge_at BIGINT NOT NULL,
    body          JSONB NOT NULL
);
-- Cleanup prunes owner indexes holding something expired; empty ones
-- (next_purge_at = 0) never need it.
CREATE INDEX IF NOT EXISTS keypackage_owners_to_prune
    ON keypackage_owners (next_purge_at) WHERE next_purge_at > 0;

-- One row per KeyPackage: twins together, their signed events inside
-- `body`; a consumed, deleted or replaced one stays as a tombstone (no
-- events) until its own not_after, so that replays are refused.
CREATE TABLE IF NOT EXISTS keypackages (
    keypackage_ref TEXT PRIMARY KEY,
    owner          TEXT NOT NULL,
    ciphersuite    INTEGER NOT NULL,
    last_resort    BOOLEAN NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('available', 'consumed', 'deleted', 'replaced')),
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    purge_at       BIGINT NOT NULL,
    slot           TEXT,
    body           JSONB NOT NULL
);
-- Available KeyPackages by owner and expiry: what queries by author read.
CREATE INDEX IF NOT EXISTS keypackages_available_by_owner
    ON keypackages (owner, expires_at) WHERE state = 'available';
-- The newest available KeyPackages: queries without authors, ids, #i or #d.
CREATE INDEX IF NOT EXISTS keypackages_available_recent
    ON keypackages (created_at DESC, keypackage_ref) WHERE state = 'available';
-- Expired available KeyPackages, for cleanup. On `purge_at`, which equals
-- `expires_at` while a KeyPackage is available, so that the planner never
-- takes it for the live queries' `expires_at > now` (which matches nearly
-- every row) instead of the index by owner.
CREATE INDEX IF NOT EXISTS keypackages_available_purge
    ON keypackages (purge_at) WHERE state = 'available';
-- Tombstones past their purge time, for cleanup.
CREATE INDEX IF NOT EXISTS keypackages_tombstone_purge
    ON keypackages (purge_at) WHERE state <> 'available';
-- 30443 slots (`#d` filters).
CREATE INDEX IF NOT EXISTS keypackages_slot
    ON keypackages (slot) WHERE slot IS NOT NULL;

-- Event id -> KeyPackage, for lookups by event id (consume, deletions,
-- `ids` filters). Rows go with their KeyPackage.
CREATE TABLE IF NOT EXISTS keypackage_events (
    event_id       TEXT PRIMARY KEY,
    keypackage_ref TEXT NOT NULL REFERENCES keypackages (keypackage_ref) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS keypackage_events_keypackage_ref ON keypackage_events (keypackage_ref);

-- One row per consumption or retirement.
CREATE TABLE IF NOT EXISTS keypackage_audit (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner          TEXT NOT NULL,
    keypackage_ref TEXT NOT NULL,
    at             BIGINT NOT NULL,
    expire_at      BIGINT NOT NULL,
    body           JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS keypackage_audit_owner ON keypackage_audit (owner, at, keypackage_ref, id);
CREATE INDEX IF NOT EXISTS keypackage_audit_expire_at ON keypackage_audit (expire_at);
