-- Long work of every kind (batch inference, knowledge-base ingestion, and the
-- customization and import jobs to come) as one kind of row: its state, progress, a
-- kind-specific resumable checkpoint, and the lease of the runner working on it.
-- A runner claims an open job whose lease is free or expired; PostgreSQL would claim
-- with `SELECT ... FOR UPDATE SKIP LOCKED`, SQLite with an immediate transaction.
CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    state           TEXT NOT NULL,
    message         TEXT,
    payload         TEXT NOT NULL DEFAULT '{}',
    checkpoint      TEXT,
    progress_done   INTEGER NOT NULL DEFAULT 0,
    progress_total  INTEGER,
    owner           TEXT,
    lease_until_ms  INTEGER,
    claims          INTEGER NOT NULL DEFAULT 0,
    stop_requested  INTEGER NOT NULL DEFAULT 0,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL,
    end_time_ms     INTEGER
);
CREATE INDEX jobs_open ON jobs (kind, created_ms) WHERE end_time_ms IS NULL;

-- Batch jobs keep their definition and counts in batch_jobs; their state moves here.
INSERT INTO jobs (id, kind, state, message, progress_done, progress_total, stop_requested,
                  created_ms, updated_ms, end_time_ms)
SELECT id, 'batch', status, message, processed_records, total_records, status = 'Stopping',
       submit_time_ms, last_modified_ms, end_time_ms
FROM batch_jobs;
DROP INDEX batch_jobs_status;
ALTER TABLE batch_jobs DROP COLUMN status;
ALTER TABLE batch_jobs DROP COLUMN message;
ALTER TABLE batch_jobs DROP COLUMN end_time_ms;
ALTER TABLE batch_jobs DROP COLUMN last_modified_ms;
