-- Application inference profiles: a named handle on one model, usable as a modelId
-- by its ARN, whose invocations are metered under the profile.
CREATE TABLE inference_profiles (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    description   TEXT,
    model_id      TEXT NOT NULL,
    tags_json     TEXT,
    client_token  TEXT UNIQUE,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL
);
-- The profile an invocation was made through, if any.
ALTER TABLE invocations ADD COLUMN inference_profile TEXT;
-- The alias the call named, when it named one (model_id is the model that answered).
ALTER TABLE invocations ADD COLUMN model_alias TEXT;
