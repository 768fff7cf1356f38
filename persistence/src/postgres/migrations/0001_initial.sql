-- Parley's PostgreSQL schema, version 1.
--
-- Every text column that is compared or ordered uses the "C" collation, so
-- equality and ordering are byte for byte, as the storage traits promise,
-- whatever the database's default collation is.
--
-- Sequence numbers are BIGINT (at most 2^63 - 1 messages per conversation).
-- Read and delivered cursors may be any u64, so they are NUMERIC(20, 0).
-- Message ids are u64 stored bit for bit in a BIGINT (ids above 2^63 - 1 read
-- as negative in SQL, but round-trip exactly).

CREATE TABLE users (
    username      TEXT COLLATE "C" PRIMARY KEY,
    password_hash TEXT NOT NULL,
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at_ms BIGINT NOT NULL
);

-- kind: 1 = direct, 2 = group. version: compare-and-set counter, 1 on create.
CREATE TABLE conversations (
    id            TEXT COLLATE "C" PRIMARY KEY,
    kind          SMALLINT NOT NULL CHECK (kind IN (1, 2)),
    name          TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    version       BIGINT NOT NULL CHECK (version >= 1)
);

-- The member list in its stored order (position), and through the second
-- index the "which conversations is this user in" lookup.
-- role: 1 = member, 2 = admin, 3 = owner.
CREATE TABLE conversation_members (
    conversation_id TEXT COLLATE "C" NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    position        INTEGER NOT NULL,
    username        TEXT COLLATE "C" NOT NULL,
    role            SMALLINT NOT NULL CHECK (role IN (1, 2, 3)),
    joined_at_ms    BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, position)
);
CREATE INDEX conversation_members_by_user ON conversation_members (username, conversation_id);

-- Read cursors are kept independently of membership (see MetadataStore::read_cursors).
CREATE TABLE read_cursors (
    conversation_id TEXT COLLATE "C" NOT NULL,
    username        TEXT COLLATE "C" NOT NULL,
    read_up_to      NUMERIC(20, 0) NOT NULL CHECK (read_up_to >= 0),
    PRIMARY KEY (conversation_id, username)
);

CREATE TABLE push_targets (
    username      TEXT COLLATE "C" NOT NULL,
    device_id     TEXT COLLATE "C" NOT NULL,
    kind          TEXT NOT NULL,
    target        TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (username, device_id)
);

-- The per-conversation sequence counter. Every append locks its
-- conversation's row, increments last_seq and inserts the message in the same
-- transaction, so seqs are gap-free and appends to one conversation are
-- serialised on every node. History does not require the conversation to
-- exist in the metadata tables, hence no foreign key.
CREATE TABLE conversation_seqs (
    conversation_id TEXT COLLATE "C" PRIMARY KEY,
    last_seq        BIGINT NOT NULL CHECK (last_seq >= 0)
);

CREATE TABLE messages (
    conversation_id   TEXT COLLATE "C" NOT NULL,
    seq               BIGINT NOT NULL CHECK (seq >= 1),
    message_id        BIGINT NOT NULL,
    sender            TEXT COLLATE "C" NOT NULL,
    client_message_id TEXT COLLATE "C" NOT NULL,
    server_time_ms    BIGINT NOT NULL,
    payload           BYTEA NOT NULL,
    PRIMARY KEY (conversation_id, seq),
    -- Idempotent retries: one message per (conversation, sender, client message id).
    UNIQUE (conversation_id, sender, client_message_id)
);

CREATE TABLE delivered_cursors (
    username        TEXT COLLATE "C" NOT NULL,
    conversation_id TEXT COLLATE "C" NOT NULL,
    delivered_up_to NUMERIC(20, 0) NOT NULL CHECK (delivered_up_to >= 0),
    PRIMARY KEY (username, conversation_id)
);

-- The end-to-end key directory: one row per device with keys, and its pool of
-- one-time prekeys (prekey_id is the device's u32 id).
CREATE TABLE key_devices (
    username                TEXT COLLATE "C" NOT NULL,
    device_id               TEXT COLLATE "C" NOT NULL,
    identity_key            BYTEA NOT NULL,
    signed_prekey           BYTEA NOT NULL,
    signed_prekey_signature BYTEA NOT NULL,
    updated_at_ms           BIGINT NOT NULL,
    PRIMARY KEY (username, device_id)
);

CREATE TABLE one_time_prekeys (
    username   TEXT COLLATE "C" NOT NULL,
    device_id  TEXT COLLATE "C" NOT NULL,
    prekey_id  BIGINT NOT NULL CHECK (prekey_id BETWEEN 0 AND 4294967295),
    public_key BYTEA NOT NULL,
    PRIMARY KEY (username, device_id, prekey_id),
    FOREIGN KEY (username, device_id) REFERENCES key_devices (username, device_id) ON DELETE CASCADE
);
