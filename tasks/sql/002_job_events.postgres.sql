-- 002: audit trail, one row per applied status transition (PostgreSQL).
CREATE TABLE IF NOT EXISTS cad_job_events (
    event_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      text NOT NULL REFERENCES cad_jobs (job_id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    from_status text,
    to_status   text NOT NULL,
    stage       text,
    detail      text
);

CREATE INDEX IF NOT EXISTS cad_job_events_job_idx ON cad_job_events (job_id, event_id);
