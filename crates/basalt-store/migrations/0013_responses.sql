-- Stored model responses (OpenAI's Responses API with `store`): the answer as it was
-- returned, and the whole conversation up to and including it, so a request naming
-- it as `previous_response_id` continues from it. Readable only by the key that made
-- it.
CREATE TABLE stored_responses (
    id            TEXT PRIMARY KEY,
    key_id        TEXT,
    created_ms    INTEGER NOT NULL,
    model_id      TEXT NOT NULL,
    response      TEXT NOT NULL,
    conversation  TEXT NOT NULL
);
CREATE INDEX stored_responses_created ON stored_responses (created_ms);
