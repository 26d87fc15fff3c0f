-- 003: performance baselines, one row per drawing size per run of the
-- performance-baseline flow (PostgreSQL). Seconds are end-to-end convert-file runs.
CREATE TABLE IF NOT EXISTS perf_baselines (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    taken_at           timestamptz NOT NULL,
    file_type          text NOT NULL,
    size_label         text NOT NULL,
    runs               integer NOT NULL CHECK (runs >= 1),
    p50                double precision NOT NULL CHECK (p50 >= 0),
    p95                double precision NOT NULL CHECK (p95 >= 0),
    p99                double precision NOT NULL CHECK (p99 >= 0),
    throughput_per_min double precision NOT NULL CHECK (throughput_per_min >= 0),
    converter_version  text NOT NULL,
    host               text NOT NULL,
    sla_p95_seconds    double precision,
    regression         boolean NOT NULL DEFAULT false,
    previous_p95       double precision
);

CREATE INDEX IF NOT EXISTS perf_baselines_size_idx
    ON perf_baselines (file_type, size_label, taken_at, id);
