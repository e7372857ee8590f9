-- Custom models: a base model and a trained (or imported) LoRA adapter, made by a
-- customization job. The job itself is a row of `jobs` (kind `customization`).
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
    created_ms          INTEGER NOT NULL
);
-- Custom-model deployments: on-demand use of a custom model, by the deployment's ARN.
CREATE TABLE custom_model_deployments (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    key_id          TEXT,
    model_id        TEXT NOT NULL,
    description     TEXT,
    client_token    TEXT UNIQUE,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL
);
