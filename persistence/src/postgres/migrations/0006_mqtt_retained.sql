-- Parley's PostgreSQL schema, version 6: the cluster's retained MQTT messages
-- and the wills of its live connections.
--
-- One row per topic that ever had a retained plain MQTT message. The node
-- that accepted a retained publish writes its row before it forwards the
-- publish to the other nodes, and a node that starts loads every row, so
-- a retained message is seen on every node, also on one started later.
-- version grows with every write (one sequence for the table): a node
-- keeps, per topic, the copy with the highest version it has seen, so
-- writes that reach nodes in different orders end the same everywhere.
-- A deleted message (an empty retained payload) stays as a row without a
-- message, so its version still wins over older copies being replayed.
-- See docs/cluster.md ("Plain MQTT across nodes").

CREATE SEQUENCE mqtt_retained_version;

CREATE TABLE mqtt_retained (
    topic      TEXT COLLATE "C" PRIMARY KEY,
    version    BIGINT NOT NULL,
    -- The bus record of the publish (persistence::kafka::codec); NULL once deleted.
    message    BYTEA,
    expires_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The wills of live connections, so that when a node dies without ending
-- its connections (kill -9, power loss) another node publishes them: a row
-- is written when a connection with a will passes CONNECT and deleted when
-- the connection ends; rows whose node's lease has run out are taken (and
-- deleted) by the first node that sweeps them, which publishes each will.
-- connection tells one node's connections of a key apart, so a late
-- removal never deletes a newer connection's row.

CREATE TABLE mqtt_wills (
    user_id    TEXT COLLATE "C" NOT NULL,
    client_id  TEXT COLLATE "C" NOT NULL,
    node_id    INTEGER NOT NULL CHECK (node_id BETWEEN 0 AND 65535),
    connection BIGINT NOT NULL,
    -- The will as a bus record (persistence::kafka::codec).
    will       BYTEA NOT NULL,
    delay_secs BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

CREATE INDEX mqtt_wills_by_node ON mqtt_wills (node_id);
