-- 001: the job ledger, one row per conversion job (PostgreSQL).
-- Timestamps are timestamptz (UTC); options and metadata are JSON text.
CREATE TABLE IF NOT EXISTS cad_jobs (
    job_id          text PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    source_uri      text NOT NULL,
    source_sha256   text,
    file_type       text,
    status          text NOT NULL DEFAULT 'PENDING'
        CHECK (status IN ('PENDING', 'RUNNING', 'SUCCESS', 'RETRY', 'FAILURE', 'DLQ',
                          'REPROCESSING')),
    stage           text,
    progress        double precision NOT NULL DEFAULT 0
        CHECK (progress >= 0 AND progress <= 100),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    error_code      text,
    error_message   text,
    result_uri      text,
    preview_uri     text,
    flow_run_id     text,
    options         text NOT NULL DEFAULT '{}',
    callback_url    text,
    metadata        text NOT NULL DEFAULT '{}',
    trace_id        text,
    reprocess_count integer NOT NULL DEFAULT 0 CHECK (reprocess_count >= 0),
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    started_at      timestamptz,
    finished_at     timestamptz
);

CREATE INDEX IF NOT EXISTS cad_jobs_status_updated_idx ON cad_jobs (status, updated_at);
CREATE INDEX IF NOT EXISTS cad_jobs_updated_idx ON cad_jobs (updated_at);
CREATE INDEX IF NOT EXISTS cad_jobs_created_idx ON cad_jobs (created_at);
CREATE INDEX IF NOT EXISTS cad_jobs_status_finished_idx ON cad_jobs (status, finished_at);
