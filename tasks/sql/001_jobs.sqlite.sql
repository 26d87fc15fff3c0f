-- 001: the job ledger, one row per conversion job (SQLite).
-- Timestamps are ISO-8601 UTC text with microseconds ("2024-05-01T12:00:00.000000+00:00"),
-- so text order is time order; options and metadata are JSON text.
CREATE TABLE IF NOT EXISTS cad_jobs (
    job_id          TEXT PRIMARY KEY NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    source_uri      TEXT NOT NULL,
    source_sha256   TEXT,
    file_type       TEXT,
    status          TEXT NOT NULL DEFAULT 'PENDING'
        CHECK (status IN ('PENDING', 'RUNNING', 'SUCCESS', 'RETRY', 'FAILURE', 'DLQ',
                          'REPROCESSING')),
    stage           TEXT,
    progress        REAL NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 100),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    error_code      TEXT,
    error_message   TEXT,
    result_uri      TEXT,
    preview_uri     TEXT,
    flow_run_id     TEXT,
    options         TEXT NOT NULL DEFAULT '{}',
    callback_url    TEXT,
    metadata        TEXT NOT NULL DEFAULT '{}',
    trace_id        TEXT,
    reprocess_count INTEGER NOT NULL DEFAULT 0 CHECK (reprocess_count >= 0),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    started_at      TEXT,
    finished_at     TEXT
);

CREATE INDEX IF NOT EXISTS cad_jobs_status_updated_idx ON cad_jobs (status, updated_at);
CREATE INDEX IF NOT EXISTS cad_jobs_updated_idx ON cad_jobs (updated_at);
CREATE INDEX IF NOT EXISTS cad_jobs_created_idx ON cad_jobs (created_at);
CREATE INDEX IF NOT EXISTS cad_jobs_status_finished_idx ON cad_jobs (status, finished_at);
