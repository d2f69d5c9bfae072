-- Validation as chunk tasks any validator process can take (docs/architecture.md).
--
-- An upload is planned once (file-level checks, a quote-aware scan for record boundaries) and
-- cut into chunks, rows of `validation_chunks` leased with FOR UPDATE SKIP LOCKED. A chunk's
-- results are written in one transaction with the chunk marked done, so a chunk taken twice
-- (its worker stalled past the lease) changes nothing the second time. The outcome is decided
-- once, after the last chunk, with the upload row locked.

-- Reference data kept in versions: an upload is validated against the version current when it
-- was planned, even if the catalogue is refreshed while its chunks are being validated.
ALTER TABLE courses ADD COLUMN version bigint;
ALTER TABLE employers ADD COLUMN version bigint;
UPDATE courses SET version = coalesce((SELECT version FROM reference_versions WHERE id = 1), 1);
UPDATE employers SET version = coalesce((SELECT version FROM reference_versions WHERE id = 1), 1);
ALTER TABLE courses ALTER COLUMN version SET NOT NULL,
    DROP CONSTRAINT courses_pkey, ADD PRIMARY KEY (version, code);
ALTER TABLE employers ALTER COLUMN version SET NOT NULL,
    DROP CONSTRAINT employers_pkey, ADD PRIMARY KEY (version, levy_number);

ALTER TABLE uploads
    ADD COLUMN reference_version bigint,
    ADD COLUMN delimiter text,
    ADD COLUMN chunks_total integer,            -- NULL until planned
    ADD COLUMN chunks_done integer NOT NULL DEFAULT 0,
    ADD COLUMN issues_stored integer NOT NULL DEFAULT 0,
    ADD COLUMN progress_sent_at timestamptz,
    -- The amendment window of every achievement of the upload ends here: one value per upload,
    -- stamped when the outcome is decided (achievements are written chunk by chunk before it).
    ADD COLUMN release_at timestamptz;
UPDATE uploads u SET release_at = (SELECT max(a.release_at) FROM achievements a
                                   WHERE a.upload_id = u.upload_id)
WHERE EXISTS (SELECT 1 FROM achievements a WHERE a.upload_id = u.upload_id);
-- Achievements of an upload whose outcome is not decided yet are written chunk by chunk and
-- stay invisible (every reader joins `uploads` and asks for an accepting status). Their window
-- is their upload's: `release_at` of an achievement is left empty from now on, and read as
-- `grant_states.RELEASE_AT` (the achievement's own, for those accepted before this migration).
ALTER TABLE achievements ALTER COLUMN release_at DROP NOT NULL;
-- The uploads still to decide, for the sweep that finishes an upload whose last chunk's worker
-- died before deciding it.
CREATE INDEX uploads_undecided ON uploads (status) WHERE status IN ('received', 'validating');

CREATE TABLE validation_chunks (
    upload_id       uuid NOT NULL REFERENCES uploads (upload_id) ON DELETE CASCADE,
    chunk_no        integer NOT NULL,
    ato_id          text NOT NULL,
    -- (start byte, end byte, first row number) triples: the records to read, blank runs left out
    segments        bigint[] NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
    lease_until     timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    planned_at      timestamptz NOT NULL DEFAULT now(),
    -- What the chunk found, summed when the outcome is decided:
    rows_total      integer,
    rows_invalid    integer,
    rows_warned     integer,
    counts_by_code  jsonb,
    file_error_code text,                       -- FILE_01 found while parsing the chunk
    file_error_message text,
    done_at         timestamptz,
    PRIMARY KEY (upload_id, chunk_no)
);
CREATE INDEX validation_chunks_pending ON validation_chunks (ato_id, planned_at, chunk_no)
    WHERE state = 'pending';

-- Round robin across ATOs: the next chunk goes to the ATO served longest ago.
CREATE TABLE ato_turns (
    ato_id          text PRIMARY KEY,
    last_served_at  timestamptz NOT NULL
);

-- What the cross-row rules need of a row until the outcome is decided: its duplicate keys
-- ('COURSE|DATE|KIND|ID', only from valid cells), whether the row is valid and warned (so a
-- row DUP_01 marks adjusts the counts exactly) and whether DUP_02 marked it already. Deleted
-- with the outcome.
CREATE TABLE row_keys (
    upload_id   uuid NOT NULL,
    row_number  integer NOT NULL,
    key         text NOT NULL,
    is_valid    boolean NOT NULL,
    has_warning boolean NOT NULL,
    dup_02      boolean NOT NULL            -- found in an earlier upload already (counted once)
);
-- Every query reads one upload's keys, and marking a duplicate row finds that row's keys: by
-- (upload, row), so each lookup is one index probe whatever plan the (stale) statistics pick.
-- An index on the upload alone made every marked row scan all of the upload's keys: a million
-- rows with a few thousand duplicates took minutes.
CREATE INDEX row_keys_upload_row ON row_keys (upload_id, row_number);

-- The row-at-a-time tables of the single-worker validator are replaced by the chunk counts and
-- `row_keys`. An upload being validated when this runs has its Kafka offset uncommitted and is
-- planned again from the start, so its partial rows go.
DELETE FROM row_issues WHERE upload_id IN
    (SELECT upload_id FROM uploads WHERE status IN ('received', 'validating'));
UPDATE uploads SET status = 'received', rows_processed = 0 WHERE status = 'validating';
DROP TABLE row_payloads;
DROP TABLE row_results;
