-- The grant stand-in's own storage: what the grant payment system received.

-- Accepted claims only; refusals live in idempotency_records alone.
CREATE TABLE claims (
    claim_id                 text PRIMARY KEY,
    idempotency_key          text NOT NULL,
    ato_id                   text NOT NULL,
    upload_id                text NOT NULL,
    row_number               integer NOT NULL,
    course_code              text NOT NULL,
    achievement_date         date NOT NULL,
    levy_registration_number text NOT NULL,
    -- Normalised learner identifiers (upper-cased, spaces removed); NULL when not given.
    uln                      text,
    ni_number                text,
    citb_individual_id       text,
    grant_amount_pence       integer NOT NULL,
    status                   text NOT NULL DEFAULT 'accepted',
    -- The request body exactly as received: it holds the learner's personal data.
    request                  jsonb NOT NULL,
    received_at              timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX claims_upload_row ON claims (upload_id, row_number, claim_id);

-- ALREADY_CLAIMED is these constraints: one accepted claim per learner identifier, course and
-- date. INSERT ... ON CONFLICT DO NOTHING waits for a concurrent insert of the same achievement,
-- so two simultaneous requests under different keys cannot both be accepted.
CREATE UNIQUE INDEX claims_one_per_uln
    ON claims (course_code, achievement_date, uln) WHERE uln IS NOT NULL;
CREATE UNIQUE INDEX claims_one_per_ni_number
    ON claims (course_code, achievement_date, ni_number) WHERE ni_number IS NOT NULL;
CREATE UNIQUE INDEX claims_one_per_citb_individual_id
    ON claims (course_code, achievement_date, citb_individual_id)
    WHERE citb_individual_id IS NOT NULL;

-- The first stored answer for each Idempotency-Key, replayed for as long as the row exists.
-- Rows are never expired by the stand-in (the contract asks for at least 7 days).
CREATE TABLE idempotency_records (
    idempotency_key text PRIMARY KEY,
    -- SHA-256 of the canonical JSON of the request body: tells a replay from a reused key.
    request_sha256  bytea NOT NULL,
    response_status smallint NOT NULL,
    response_body   jsonb NOT NULL,
    claim_id        text REFERENCES claims (claim_id),
    created_at      timestamptz NOT NULL DEFAULT now()
);
