-- Per-key quota overrides (NULL: the configured default applies).
ALTER TABLE api_keys ADD COLUMN requests_per_minute INTEGER;
ALTER TABLE api_keys ADD COLUMN tokens_per_minute INTEGER;
ALTER TABLE api_keys ADD COLUMN monthly_budget_usd REAL;

-- Fixed one-minute quota windows per key and model, written behind the in-memory
-- counters so a restarted node keeps counting the current minute.
CREATE TABLE quota_windows (
    key_id          TEXT NOT NULL,
    model_id        TEXT NOT NULL,
    window_start_ms INTEGER NOT NULL,
    requests        INTEGER NOT NULL,
    tokens          INTEGER NOT NULL,
    PRIMARY KEY (key_id, model_id, window_start_ms)
);
CREATE INDEX invocations_key_at ON invocations (key_id, at_ms);
