-- A version number of the api_keys table, moved by triggers on every change to it
-- from any connection or process: the server's key cache watches it (the change
-- marker), so a key revoked with the CLI stops working at once, and writes to other
-- tables (metering, quotas, jobs) do not empty the cache.
CREATE TABLE key_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO key_version (id, version) VALUES (1, 0);
CREATE TRIGGER api_keys_version_on_insert AFTER INSERT ON api_keys
BEGIN UPDATE key_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER api_keys_version_on_update AFTER UPDATE ON api_keys
BEGIN UPDATE key_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER api_keys_version_on_delete AFTER DELETE ON api_keys
BEGIN UPDATE key_version SET version = version + 1 WHERE id = 1; END;
