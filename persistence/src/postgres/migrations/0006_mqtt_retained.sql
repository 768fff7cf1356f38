-- Parley's PostgreSQL schema, version 6: the cluster's retained MQTT messages.
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
