-- Parley's PostgreSQL schema, version 3: what users decided about each other.
--
-- One row per decision: username blocked other (relation 2), accepted
-- other's message request (relation 1), or wants to be added to groups only
-- by users it accepted (relation 3, other empty), at at_ms (milliseconds
-- since the Unix epoch). See docs/topics.md ("Message requests and blocking").

CREATE TABLE user_relations (
    username TEXT COLLATE "C" NOT NULL,
    other    TEXT COLLATE "C" NOT NULL,
    relation SMALLINT NOT NULL,
    at_ms    BIGINT NOT NULL,
    PRIMARY KEY (username, other, relation)
);
