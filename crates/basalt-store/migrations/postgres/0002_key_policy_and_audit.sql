-- A key's permissions policy (IAM-style JSON; NULL: every action), and the audit log
-- of control-plane changes: who (key), what (action, resources, status), when.
ALTER TABLE api_keys ADD COLUMN policy TEXT;
CREATE TABLE audit_log (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms      BIGINT NOT NULL,
    request_id TEXT NOT NULL,
    key_id     TEXT,
    key_name   TEXT NOT NULL,
    action     TEXT NOT NULL,
    resource   TEXT NOT NULL,
    status     INTEGER NOT NULL,
    source     TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at_ms);
