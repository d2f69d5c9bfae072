-- Each person signs in to the ATO's pages through the portal (services/upload_gateway/pages/
-- portal_sign_in.py): a session names the person and their role instead of an API key, and the
-- audit trail, the uploads and their withdrawals name the person who acted. The portal's subject
-- identifies a person; the display name is kept beside it so the trail reads without the
-- portal. Both are the ATO's staff's, never a learner's.

-- A session opened through the portal has a person and a role and no API key; one opened with
-- an API key (the setting for ATOs without the portal) has a key and no person.
ALTER TABLE page_sessions
    ALTER COLUMN key_id DROP NOT NULL,
    ADD COLUMN person_subject text,
    ADD COLUMN person_name text,
    ADD COLUMN role text NOT NULL DEFAULT 'submitter'
        CONSTRAINT page_sessions_role_check CHECK (role IN ('submitter', 'viewer')),
    ADD CONSTRAINT page_sessions_signed_in_by CHECK (
        (key_id IS NOT NULL AND person_subject IS NULL)
        OR (key_id IS NULL AND person_subject IS NOT NULL AND person_name IS NOT NULL));

-- The hand-off tokens already used: a token is taken once. A row is needed only while its token
-- could still pass the expiry check; later ones are removed as new ones arrive (and by the purge).
CREATE TABLE portal_token_uses (
    token_id   text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX portal_token_uses_expiry ON portal_token_uses (expires_at);

-- Who acted: the API key (key_id) or, signed in through the portal, the person.
ALTER TABLE audit_events
    ADD COLUMN person_subject text,
    ADD COLUMN person_name text;
CREATE INDEX audit_events_person ON audit_events (person_subject, occurred_at)
    WHERE person_subject IS NOT NULL;

-- Who uploaded a file and who withdrew it, when a person did (an API client: NULL).
ALTER TABLE uploads
    ADD COLUMN uploaded_by_subject text,
    ADD COLUMN uploaded_by_name text,
    ADD COLUMN withdrawn_by_subject text,
    ADD COLUMN withdrawn_by_name text;
CREATE INDEX uploads_uploaded_by ON uploads (ato_id, uploaded_by_subject, received_at)
    WHERE uploaded_by_subject IS NOT NULL;
