-- Every run of the retention purge (services/core/retention.py), a failed one included, so that
-- a long-running process can export them as metrics (services/core/ops_exporter.py): a CronJob
-- exits before Prometheus could scrape it. Times, counts and the error's class name only: never
-- a value read from a row, a file name or an error's message.
CREATE TABLE purge_runs (
    run_id              bigserial PRIMARY KEY,
    started_at          timestamptz NOT NULL,
    finished_at         timestamptz NOT NULL,
    outcome             text NOT NULL
                        CONSTRAINT purge_runs_outcome_check CHECK (outcome IN ('succeeded', 'failed')),
    -- What the run committed; for a failed run, what its transactions committed before it failed.
    uploads_purged      integer NOT NULL CHECK (uploads_purged >= 0),
    achievements_purged integer NOT NULL CHECK (achievements_purged >= 0),
    files_deleted       integer NOT NULL CHECK (files_deleted >= 0),
    -- A failed run's error, as its Python class name (`TooManyConnectionsError`): a name, so that
    -- no message (which might quote a value) can be stored here.
    error_class         text
                        CONSTRAINT purge_runs_error_class_check
                        CHECK (error_class ~ '^[A-Za-z_][A-Za-z0-9_.]{0,199}$'),
    CONSTRAINT purge_runs_error_when_failed CHECK ((outcome = 'failed') = (error_class IS NOT NULL)),
    CONSTRAINT purge_runs_in_order CHECK (finished_at >= started_at)
);
-- The exporter's reads: the last run, the last success.
CREATE INDEX purge_runs_by_finish ON purge_runs (finished_at DESC);
CREATE INDEX purge_runs_succeeded ON purge_runs (finished_at DESC) WHERE outcome = 'succeeded';
