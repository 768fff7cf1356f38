-- Parley's PostgreSQL schema, version 4: the session directory.
--
-- One row per live MQTT session of a cluster: which node the connection of
-- (user_id, client_id) is on. A node inserts or takes over the row when a
-- connection passes CONNECT and deletes it when the connection ends. A row
-- is live while its node's lease (node_leases) is: a node that dies leaves
-- its rows behind, and they count as gone once its lease has expired (any
-- node then deletes them). generation grows with every claim of a key, so
-- of two claims the later one is known. See docs/cluster.md ("Session
-- directory").

CREATE SEQUENCE session_directory_generation;

CREATE TABLE session_directory (
    user_id      TEXT COLLATE "C" NOT NULL,
    client_id    TEXT COLLATE "C" NOT NULL,
    node_id      INTEGER NOT NULL CHECK (node_id BETWEEN 0 AND 65535),
    generation   BIGINT NOT NULL,
    connected_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, client_id)
);

CREATE INDEX session_directory_by_node ON session_directory (node_id);
