-- The PostgreSQL store's schema: the tables of SQLite's migrations 0001-0013 as they
-- stand after them, in PostgreSQL's types. Every integer is BIGINT (read as i64),
-- flags are BOOLEAN, JSON bodies stay TEXT (the store does not query inside them).
-- A later change adds a migration here and one beside it for SQLite.

-- API keys: public identifiers and a hash of the bearer token only.
CREATE TABLE api_keys (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    access_key_id       TEXT NOT NULL UNIQUE,
    bearer_sha256       TEXT NOT NULL UNIQUE,
    is_admin            BOOLEAN NOT NULL DEFAULT FALSE,
    created_at          BIGINT NOT NULL,
    revoked_at          BIGINT,
    requests_per_minute BIGINT,
    tokens_per_minute   BIGINT,
    monthly_budget_usd  DOUBLE PRECISION,
    retrieval_filter    TEXT
);

-- The key table's version: a statement trigger moves it and notifies `basalt_keys`
-- on every change, and each node's key watcher re-reads it (the change marker).
CREATE TABLE key_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO key_version (id, version) VALUES (1, 0);
CREATE FUNCTION basalt_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE key_version SET version = version + 1 WHERE id = 1;
    PERFORM pg_notify('basalt_keys', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION basalt_keys_changed();

-- One row per model invocation (metering).
CREATE TABLE invocations (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms             BIGINT NOT NULL,
    request_id        TEXT NOT NULL,
    key_id            TEXT,
    key_name          TEXT,
    model_id          TEXT NOT NULL,
    inference_type    TEXT NOT NULL,
    operation         TEXT NOT NULL,
    input_tokens      BIGINT NOT NULL,
    output_tokens     BIGINT NOT NULL,
    latency_ms        BIGINT NOT NULL,
    first_token_ms    BIGINT,
    cost_usd          DOUBLE PRECISION NOT NULL,
    outcome           TEXT NOT NULL,
    inference_profile TEXT,
    model_alias       TEXT,
    agent_session     TEXT
);
CREATE INDEX invocations_at ON invocations (at_ms);
CREATE INDEX invocations_key_at ON invocations (key_id, at_ms);
-- Metering batches written, by a digest of their records: a batch whose commit's
-- outcome was lost with the connection is written again without counting twice.
CREATE TABLE invocation_batches (
    digest TEXT PRIMARY KEY,
    at_ms  BIGINT NOT NULL
);
CREATE INDEX invocation_batches_at ON invocation_batches (at_ms);

-- Guardrails: one row per version ('DRAFT' and immutable numbered snapshots).
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
    created_at_ms             BIGINT NOT NULL,
    updated_at_ms             BIGINT NOT NULL,
    PRIMARY KEY (id, version)
);
CREATE UNIQUE INDEX guardrails_draft_name ON guardrails (name) WHERE version = 'DRAFT';
CREATE UNIQUE INDEX guardrails_client_token ON guardrails (client_token) WHERE client_token IS NOT NULL;

-- Fixed one-minute quota windows per key and model.
CREATE TABLE quota_windows (
    key_id          TEXT NOT NULL,
    model_id        TEXT NOT NULL,
    window_start_ms BIGINT NOT NULL,
    requests        BIGINT NOT NULL,
    tokens          BIGINT NOT NULL,
    PRIMARY KEY (key_id, model_id, window_start_ms)
);

-- Batch inference jobs: definition and counts (the state lives in `jobs`).
CREATE TABLE batch_jobs (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    model_id            TEXT NOT NULL,
    role_arn            TEXT NOT NULL,
    invocation_type     TEXT NOT NULL,
    input_uri           TEXT NOT NULL,
    output_uri          TEXT NOT NULL,
    key_id              TEXT,
    key_name            TEXT,
    client_token        TEXT UNIQUE,
    timeout_hours       BIGINT NOT NULL,
    submit_time_ms      BIGINT NOT NULL,
    total_records       BIGINT,
    processed_records   BIGINT NOT NULL DEFAULT 0,
    success_records     BIGINT NOT NULL DEFAULT 0,
    error_records       BIGINT NOT NULL DEFAULT 0,
    input_tokens        BIGINT NOT NULL DEFAULT 0,
    output_tokens       BIGINT NOT NULL DEFAULT 0
);

-- Provisioned throughput: reserved capacity on one model, in model units.
CREATE TABLE provisioned_models (
    id                    TEXT PRIMARY KEY,
    name                  TEXT NOT NULL UNIQUE,
    model_id              TEXT NOT NULL,
    desired_model_id      TEXT NOT NULL,
    model_units           BIGINT NOT NULL,
    status                TEXT NOT NULL,
    failure_message       TEXT,
    commitment            TEXT,
    commitment_expires_ms BIGINT,
    client_token          TEXT UNIQUE,
    created_ms            BIGINT NOT NULL,
    updated_ms            BIGINT NOT NULL
);

-- Knowledge bases, data sources and ingestion jobs (control-plane records).
CREATE TABLE knowledge_resources (
    kind       TEXT NOT NULL,
    id         TEXT NOT NULL,
    parent     TEXT NOT NULL,
    name       TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE UNIQUE INDEX knowledge_resources_name ON knowledge_resources (kind, parent, name)
    WHERE kind != 'ingestion_job';
CREATE INDEX knowledge_resources_parent ON knowledge_resources (kind, parent, created_ms);

-- Long work of every kind, claimed under leases (`FOR UPDATE SKIP LOCKED`). `seq`
-- orders jobs created in the same millisecond (SQLite's rowid).
CREATE TABLE jobs (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY,
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    state           TEXT NOT NULL,
    message         TEXT,
    payload         TEXT NOT NULL DEFAULT '{}',
    checkpoint      TEXT,
    progress_done   BIGINT NOT NULL DEFAULT 0,
    progress_total  BIGINT,
    owner           TEXT,
    lease_until_ms  BIGINT,
    claims          BIGINT NOT NULL DEFAULT 0,
    stop_requested  BOOLEAN NOT NULL DEFAULT FALSE,
    created_ms      BIGINT NOT NULL,
    updated_ms      BIGINT NOT NULL,
    end_time_ms     BIGINT
);
CREATE INDEX jobs_open ON jobs (kind, created_ms) WHERE end_time_ms IS NULL;

-- Application inference profiles.
CREATE TABLE inference_profiles (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    description   TEXT,
    model_id      TEXT NOT NULL,
    tags_json     TEXT,
    client_token  TEXT UNIQUE,
    created_ms    BIGINT NOT NULL,
    updated_ms    BIGINT NOT NULL
);

-- Bedrock Agents: versions, aliases, sessions and memory, each one JSON body.
CREATE TABLE agent_records (
    kind        TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    key         TEXT NOT NULL,
    name_scope  TEXT,
    name        TEXT,
    body        TEXT NOT NULL,
    revision    BIGINT NOT NULL,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    expires_ms  BIGINT,
    PRIMARY KEY (kind, agent_id, key)
);
CREATE UNIQUE INDEX agent_record_names ON agent_records (kind, name_scope, name);
CREATE INDEX agent_record_expiry ON agent_records (expires_ms) WHERE expires_ms IS NOT NULL;

-- Custom models and their deployments.
CREATE TABLE custom_models (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    key_id              TEXT,
    base_model_id       TEXT NOT NULL,
    job_id              TEXT NOT NULL,
    customization_type  TEXT NOT NULL,
    adapter_path        TEXT NOT NULL,
    adapter_sha256      TEXT NOT NULL,
    details_json        TEXT NOT NULL,
    created_ms          BIGINT NOT NULL
);
CREATE TABLE custom_model_deployments (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    key_id          TEXT,
    model_id        TEXT NOT NULL,
    description     TEXT,
    client_token    TEXT UNIQUE,
    created_ms      BIGINT NOT NULL,
    updated_ms      BIGINT NOT NULL
);

-- Stored model responses (OpenAI's Responses API with `store`).
CREATE TABLE stored_responses (
    id            TEXT PRIMARY KEY,
    key_id        TEXT,
    created_ms    BIGINT NOT NULL,
    model_id      TEXT NOT NULL,
    response      TEXT NOT NULL,
    conversation  TEXT NOT NULL
);
CREATE INDEX stored_responses_created ON stored_responses (created_ms);
