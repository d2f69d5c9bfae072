-- Sign-in sessions of the ATO's own pages. The API key is checked once at sign-in and never
-- kept: a session holds only a SHA-256 of its random token (the cookie's value), the ATO and
-- the key it was opened with, so revoking that key ends the session too.
CREATE TABLE page_sessions (
    token_hash           bytea PRIMARY KEY,
    ato_id               text NOT NULL REFERENCES atos (ato_id),
    key_id               uuid NOT NULL REFERENCES api_keys (key_id) ON DELETE CASCADE,
    created_at           timestamptz NOT NULL,
    -- Idle expiry, moved forward by each request, never past the absolute one.
    expires_at           timestamptz NOT NULL,
    absolute_expires_at  timestamptz NOT NULL,
    CHECK (expires_at <= absolute_expires_at)
);
CREATE INDEX page_sessions_expiry ON page_sessions (absolute_expires_at);
