-- API keys: only public identifiers and a hash of the bearer token are stored.
-- SigV4 secrets are derived from the server's master key, never written here.
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    access_key_id TEXT NOT NULL UNIQUE,
    bearer_sha256 TEXT NOT NULL UNIQUE,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    revoked_at    INTEGER
);

-- One row per model invocation (metering).
CREATE TABLE invocations (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms          INTEGER NOT NULL,
    request_id     TEXT NOT NULL,
    key_id         TEXT,
    key_name       TEXT,
    model_id       TEXT NOT NULL,
    inference_type TEXT NOT NULL,
    operation      TEXT NOT NULL,
    input_tokens   INTEGER NOT NULL,
    output_tokens  INTEGER NOT NULL,
    latency_ms     INTEGER NOT NULL,
    first_token_ms INTEGER,
    cost_usd       REAL NOT NULL,
    outcome        TEXT NOT NULL
);
CREATE INDEX invocations_at ON invocations (at_ms);
