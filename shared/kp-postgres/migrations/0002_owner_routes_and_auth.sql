-- Version 2: what the owner routes need: every KeyPackage of an owner,
-- tombstones included, and the NIP-98 auth events already used.

-- Every record of one owner, whatever its state (the index of version 1
-- holds only the available ones).
CREATE INDEX IF NOT EXISTS keypackages_owner ON keypackages (owner);

-- NIP-98 auth events already used: each is good once, until its window
-- has passed and cleanup forgets it.
CREATE TABLE IF NOT EXISTS keypackage_auth (
    event_id  TEXT PRIMARY KEY,
    expire_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS keypackage_auth_expire_at ON keypackage_auth (expire_at);
