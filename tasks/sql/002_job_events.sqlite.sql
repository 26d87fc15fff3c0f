-- 002: audit trail, one row per applied status transition (SQLite).
CREATE TABLE IF NOT EXISTS cad_job_events (
    event_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      TEXT NOT NULL REFERENCES cad_jobs (job_id) ON DELETE CASCADE,
    at          TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    stage       TEXT,
    detail      TEXT
);

CREATE INDEX IF NOT EXISTS cad_job_events_job_idx ON cad_job_events (job_id, event_id);
