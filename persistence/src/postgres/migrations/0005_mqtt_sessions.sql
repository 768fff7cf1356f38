-- Parley's PostgreSQL schema, version 5: durable MQTT sessions.
--
-- A persistent MQTT session (3.1.1 clean session 0, MQTT 5 Session Expiry
-- > 0) is owned by one node at a time (owner_node): only that node's router
-- holds it and only that node writes its rows. Another node that needs the
-- session (its client connected there) asks for it by setting handover_to;
-- the owner hands it over by setting owner_node once everything it wrote
-- for the session is committed. A session of a node whose lease
-- (node_leases) has expired may be taken by any live node directly.
-- Values use the same encodings as the embedded store (a version byte,
-- then JSON for descriptions; a JSON header and the raw payload for
-- messages). See docs/sessions.md ("Sessions in a cluster").

CREATE TABLE mqtt_sessions (
    session_key TEXT COLLATE "C" PRIMARY KEY,
    owner_node  INTEGER NOT NULL CHECK (owner_node BETWEEN 0 AND 65535),
    handover_to INTEGER CHECK (handover_to BETWEEN 0 AND 65535),
    record      BYTEA NOT NULL
);

CREATE INDEX mqtt_sessions_by_owner ON mqtt_sessions (owner_node, session_key);

CREATE INDEX mqtt_sessions_handovers ON mqtt_sessions (owner_node)
    WHERE handover_to IS NOT NULL;

-- Queued QoS 1/2 messages, by session and sequence number, with how far
-- their delivery got (stage 3 = PUBREC received, awaiting PUBCOMP).
CREATE TABLE mqtt_queue (
    session_key TEXT COLLATE "C" NOT NULL,
    seq         BIGINT NOT NULL,
    message     BYTEA NOT NULL,
    pkid        INTEGER,
    stage       SMALLINT,
    PRIMARY KEY (session_key, seq)
);

-- QoS 2 packet ids received from a session's client, awaiting PUBREL.
CREATE TABLE mqtt_incoming_qos2 (
    session_key TEXT COLLATE "C" NOT NULL,
    pkid        INTEGER NOT NULL,
    PRIMARY KEY (session_key, pkid)
);
