-- 003: performance baselines, one row per drawing size per run of the
-- performance-baseline flow (SQLite). taken_at is ISO-8601 UTC text like the ledger's
-- other timestamps; regression is 0/1.
CREATE TABLE IF NOT EXISTS perf_baselines (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    taken_at           TEXT NOT NULL,
    file_type          TEXT NOT NULL,
    size_label         TEXT NOT NULL,
    runs               INTEGER NOT NULL CHECK (runs >= 1),
    p50                REAL NOT NULL CHECK (p50 >= 0),
    p95                REAL NOT NULL CHECK (p95 >= 0),
    p99                REAL NOT NULL CHECK (p99 >= 0),
    throughput_per_min REAL NOT NULL CHECK (throughput_per_min >= 0),
    converter_version  TEXT NOT NULL,
    host               TEXT NOT NULL,
    sla_p95_seconds    REAL,
    regression         INTEGER NOT NULL DEFAULT 0 CHECK (regression IN (0, 1)),
    previous_p95       REAL
);

CREATE INDEX IF NOT EXISTS perf_baselines_size_idx
    ON perf_baselines (file_type, size_label, taken_at, id);
