-- Retention of learner data and the audit trail (docs/retention.md).
--
-- Personal data has an end date: `achievements purge` deletes an upload's stored file, clears
-- its masked values and replaces its file name once its outcome is older than the retention
-- period, then replaces the personal fields of its achievements once their claims are settled.
-- What stays is what the ATO and the grant side need: statuses, counts, codes, sha256, states,
-- amounts and timestamps.

-- The upload's file, masked values and file name are gone (services/core/retention.py).
ALTER TABLE uploads
    ADD COLUMN purged_at timestamptz,
    -- Every achievement of the upload holds nothing personal any more; until then the purge
    -- comes back to it (a claim still pending keeps its achievement's fields).
    ADD COLUMN achievements_purged_at timestamptz;
-- The uploads still to purge, oldest outcome first.
CREATE INDEX uploads_to_purge ON uploads ((greatest(validated_at, withdrawn_at)))
    WHERE purged_at IS NULL;
-- Purged uploads with achievements whose personal fields are still there.
CREATE INDEX uploads_achievements_to_purge ON uploads (upload_id)
    WHERE purged_at IS NOT NULL AND achievements_purged_at IS NULL;

-- A purged (or erased) achievement keeps no name or date of birth.
ALTER TABLE achievements
    ALTER COLUMN forename DROP NOT NULL,
    ALTER COLUMN surname DROP NOT NULL,
    ALTER COLUMN date_of_birth DROP NOT NULL,
    ADD COLUMN purged_at timestamptz,
    -- A learner asked to be erased while the claim was under way: erased once it is settled,
    -- whatever the age of its upload.
    ADD COLUMN erase_requested_at timestamptz;
CREATE INDEX achievements_erase_requested ON achievements (achievement_id)
    WHERE erase_requested_at IS NOT NULL AND purged_at IS NULL;

-- DUP_02 after a purge: the HMAC-SHA256 (secret RETENTION_KEY_SECRET) of each duplicate key
-- ('COURSE|DATE|KIND|ID') of a purged, not-withdrawn achievement. Never the identifier itself.
-- The achievement row stays (its state decides whether it still counts, as for any other).
CREATE TABLE purged_duplicate_keys (
    achievement_id  uuid NOT NULL REFERENCES achievements (achievement_id),
    key_hmac        bytea NOT NULL,
    ato_id          text NOT NULL,
    upload_id       uuid NOT NULL,
    PRIMARY KEY (achievement_id, key_hmac)
);
-- The chunk check probes it once per key of the uploading ATO.
CREATE INDEX purged_duplicate_keys_lookup ON purged_duplicate_keys (ato_id, key_hmac);

-- Who did what, when: identifiers and times only, never a learner's data or a file name.
CREATE TABLE audit_events (
    event_id    bigserial PRIMARY KEY,
    kind        text NOT NULL CONSTRAINT audit_events_kind_check CHECK (kind IN (
                    'upload_received', 'upload_withdrawn', 'achievement_withdrawn',
                    'error_report_downloaded', 'achievements_listed', 'key_used',
                    'learner_found', 'learner_exported', 'learner_erased', 'upload_purged')),
    ato_id      text,
    key_id      uuid,                       -- the API key that made the request, if any
    upload_id   uuid,
    occurred_at timestamptz NOT NULL
);
CREATE INDEX audit_events_ato_time ON audit_events (ato_id, occurred_at);
