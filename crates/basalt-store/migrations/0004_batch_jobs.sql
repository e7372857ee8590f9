-- Batch inference jobs. The records' progress lives in the output files (each output
-- line names its record); these rows hold the job's definition, status and counts.
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
    status              TEXT NOT NULL,
    message             TEXT,
    timeout_hours       INTEGER NOT NULL,
    submit_time_ms      INTEGER NOT NULL,
    last_modified_ms    INTEGER NOT NULL,
    end_time_ms         INTEGER,
    total_records       INTEGER,
    processed_records   INTEGER NOT NULL DEFAULT 0,
    success_records     INTEGER NOT NULL DEFAULT 0,
    error_records       INTEGER NOT NULL DEFAULT 0,
    input_tokens        INTEGER NOT NULL DEFAULT 0,
    output_tokens       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX batch_jobs_status ON batch_jobs (status);
