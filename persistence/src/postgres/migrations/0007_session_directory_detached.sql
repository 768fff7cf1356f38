-- Parley's PostgreSQL schema, version 7: disconnected persistent sessions
-- in the session directory.
--
-- A persistent MQTT session (session expiry above 0) whose connection ended
-- stays in its node's memory and store, queueing what it is subscribed to,
-- until it expires or its client comes back. Its directory row stays too,
-- with detached set, so that deliveries to its user still go to its node
-- (see docs/cluster.md, "Targeted delivery"); presence, push and rate
-- limits count only rows that are not detached. A new claim of the key
-- clears it; the node removes the row when the session expires.

ALTER TABLE session_directory ADD COLUMN detached BOOLEAN NOT NULL DEFAULT false;
