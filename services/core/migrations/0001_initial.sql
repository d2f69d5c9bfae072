-- The pipeline's own schema. Personal data lives only in `achievements` (and the stored file).

CREATE TABLE atos (
    ato_id          text PRIMARY KEY,
    name            text NOT NULL,
    default_policy  text NOT NULL DEFAULT 'all_or_nothing'
                    CHECK (default_policy IN ('all_or_nothing', 'valid_rows')),
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    key_id      uuid PRIMARY KEY,
    ato_id      text NOT NULL REFERENCES atos (ato_id),
    key_hash    bytea NOT NULL UNIQUE,      -- SHA-256 of the secret; the secret itself is never stored
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE uploads (
    upload_id           uuid PRIMARY KEY,
    ato_id              text NOT NULL REFERENCES atos (ato_id),
    file_name           text NOT NULL,
    size_bytes          bigint NOT NULL,
    sha256              text NOT NULL,
    policy              text NOT NULL CHECK (policy IN ('all_or_nothing', 'valid_rows')),
    storage_key         text NOT NULL,
    idempotency_key     text,
    terms_accepted_at   timestamptz NOT NULL,
    upload_date         date NOT NULL,          -- the day received, in UK time: the rules' "today"
    status              text NOT NULL DEFAULT 'received',
    encoding            text,
    rows_total          integer NOT NULL DEFAULT 0,
    rows_valid          integer NOT NULL DEFAULT 0,
    rows_invalid        integer NOT NULL DEFAULT 0,
    rows_warned         integer NOT NULL DEFAULT 0,
    rows_processed      integer NOT NULL DEFAULT 0,
    counts_by_code      jsonb NOT NULL DEFAULT '{}'::jsonb,
    file_error_code     text,
    file_error_message  text,
    received_at         timestamptz NOT NULL DEFAULT now(),
    validation_started_at timestamptz,
    validated_at        timestamptz,
    withdrawn_at        timestamptz,
    UNIQUE (ato_id, idempotency_key)
);
CREATE INDEX uploads_ato_received ON uploads (ato_id, received_at DESC);
CREATE INDEX uploads_ato_sha ON uploads (ato_id, sha256);

-- One line per data row of an upload: the outcome, and the keys the cross-row rules need.
CREATE TABLE row_results (
    upload_id       uuid NOT NULL REFERENCES uploads (upload_id) ON DELETE CASCADE,
    row_number      integer NOT NULL,
    is_valid        boolean NOT NULL,
    has_warning     boolean NOT NULL,
    codes           text[] NOT NULL,
    duplicate_keys  text[] NOT NULL,            -- 'COURSE|DATE|KIND|ID', only from valid cells
    achievement     jsonb,                      -- normalised values of a valid row, until accepted
    PRIMARY KEY (upload_id, row_number)
);

-- What the ATO reads back; capped per upload while the counts per code stay exact.
CREATE TABLE row_issues (
    upload_id   uuid NOT NULL REFERENCES uploads (upload_id) ON DELETE CASCADE,
    row_number  integer NOT NULL,
    position    smallint NOT NULL,              -- order within the row: template column order, row-level last
    column_name text,
    code        text NOT NULL,
    severity    text NOT NULL,
    message     text NOT NULL,
    masked_value text,
    PRIMARY KEY (upload_id, row_number, position)
);

CREATE TABLE achievements (
    achievement_id      uuid PRIMARY KEY,
    upload_id           uuid NOT NULL REFERENCES uploads (upload_id),
    row_number          integer NOT NULL,
    ato_id              text NOT NULL,
    provider_reference  text,
    course_code         text NOT NULL,
    achievement_date    date NOT NULL,
    forename            text NOT NULL,
    surname             text NOT NULL,
    date_of_birth       date NOT NULL,
    uln                 text,
    ni_number           text,
    citb_individual_id  text,
    levy_number         text,
    notes               text,
    grant_eligible      boolean NOT NULL,
    release_at          timestamptz NOT NULL,
    -- held: waiting for the amendment window; not_eligible: recorded, never sent;
    -- claimed / refused: the grant system's final answer; withdrawn: by the ATO
    grant_state         text NOT NULL CHECK (grant_state IN
                        ('held', 'not_eligible', 'claimed', 'refused', 'withdrawn')),
    grant_code          text,
    grant_amount_pence  integer,
    claimed_at          timestamptz,
    withdrawn_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (upload_id, row_number)
);
CREATE INDEX achievements_duplicate_uln ON achievements (course_code, achievement_date, uln)
    WHERE uln IS NOT NULL AND grant_state <> 'withdrawn';
CREATE INDEX achievements_duplicate_nino ON achievements (course_code, achievement_date, ni_number)
    WHERE ni_number IS NOT NULL AND grant_state <> 'withdrawn';
CREATE INDEX achievements_duplicate_citb ON achievements (course_code, achievement_date, citb_individual_id)
    WHERE citb_individual_id IS NOT NULL AND grant_state <> 'withdrawn';

-- Reference data, refreshed in place by `achievements reference load`.
CREATE TABLE courses (
    code            text PRIMARY KEY,
    title           text NOT NULL,
    tier            integer NOT NULL,
    duration_hours  integer NOT NULL,
    grant_pence     integer NOT NULL,
    valid_from      date NOT NULL,
    valid_to        date
);
CREATE TABLE employers (
    levy_number     text PRIMARY KEY,
    employer_name   text NOT NULL,
    grant_eligible  boolean NOT NULL
);
CREATE TABLE reference_versions (
    id          integer PRIMARY KEY CHECK (id = 1),
    version     bigint NOT NULL,
    loaded_at   timestamptz NOT NULL DEFAULT now()
);

-- Transactional outbox: written with the change it reports, relayed to Kafka afterwards.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    topic       text NOT NULL,
    key         text NOT NULL,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;

-- Consumers remember what they applied, so a redelivered event changes nothing.
CREATE TABLE processed_events (
    consumer    text NOT NULL,
    event_id    uuid NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
