-- Parley's PostgreSQL schema, version 2: node leases.
--
-- One row per node id in use: the process holding it (holder, an id the
-- node keeps in its data directory, and a description for people: host,
-- process, directory) and until when. A node takes the lease of its id at
-- start-up, renews it while it runs and deletes it when it shuts down;
-- another holder may take the id only once the lease has expired or been
-- deleted. Every time is this server's clock (now()), never a node's.
-- See docs/cluster.md ("Node ids").

CREATE TABLE node_leases (
    node_id     INTEGER PRIMARY KEY CHECK (node_id BETWEEN 0 AND 65535),
    holder      TEXT COLLATE "C" NOT NULL,
    description TEXT NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL,
    renewed_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
