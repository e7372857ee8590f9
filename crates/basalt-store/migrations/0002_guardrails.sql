-- Guardrails: one row per version. 'DRAFT' is the editable one; numbered versions
-- ('1', '2', ...) are immutable snapshots of the DRAFT taken by CreateGuardrailVersion.
CREATE TABLE guardrails (
    id                        TEXT NOT NULL,
    version                   TEXT NOT NULL,
    name                      TEXT NOT NULL,
    description               TEXT,
    policy_json               TEXT NOT NULL,
    blocked_input_messaging   TEXT NOT NULL,
    blocked_outputs_messaging TEXT NOT NULL,
    kms_key_id                TEXT,
    tags_json                 TEXT,
    client_token              TEXT,
    created_at_ms             INTEGER NOT NULL,
    updated_at_ms             INTEGER NOT NULL,
    PRIMARY KEY (id, version)
);
CREATE UNIQUE INDEX guardrails_draft_name ON guardrails (name) WHERE version = 'DRAFT';
CREATE UNIQUE INDEX guardrails_client_token ON guardrails (client_token) WHERE client_token IS NOT NULL;
