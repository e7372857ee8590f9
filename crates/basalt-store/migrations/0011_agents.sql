-- Bedrock Agents: each agent's versions (DRAFT and numbered snapshots, each the whole
-- definition as one JSON body), its aliases, and the sessions of its conversations.
-- `revision` makes every write of a record a compare-and-swap.
CREATE TABLE agent_records (
    kind        TEXT NOT NULL,      -- version, alias, session, memory
    agent_id    TEXT NOT NULL,
    key         TEXT NOT NULL,      -- version name, alias ID, alias/session ID, memory/session
    -- A name unique within `name_scope` (agent names among DRAFT rows, alias names
    -- within their agent); NULL where none applies.
    name_scope  TEXT,
    name        TEXT,
    body        TEXT NOT NULL,
    revision    INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    -- When the record may be dropped (idle sessions); NULL: kept.
    expires_ms  INTEGER,
    PRIMARY KEY (kind, agent_id, key)
);
CREATE UNIQUE INDEX agent_record_names ON agent_records (kind, name_scope, name);
CREATE INDEX agent_record_expiry ON agent_records (expires_ms) WHERE expires_ms IS NOT NULL;
-- The agent session a model call was made for (`<agent ID>/<session ID>`), if any.
ALTER TABLE invocations ADD COLUMN agent_session TEXT;
