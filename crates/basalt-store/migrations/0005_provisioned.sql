-- Provisioned throughput: reserved capacity on one model, in model units.
CREATE TABLE provisioned_models (
    id                   TEXT PRIMARY KEY,
    name                 TEXT NOT NULL UNIQUE,
    model_id             TEXT NOT NULL,
    desired_model_id     TEXT NOT NULL,
    model_units          INTEGER NOT NULL,
    status               TEXT NOT NULL,
    failure_message      TEXT,
    commitment           TEXT,
    commitment_expires_ms INTEGER,
    client_token         TEXT UNIQUE,
    created_ms           INTEGER NOT NULL,
    updated_ms           INTEGER NOT NULL
);
