-- Operators and the audit trail of what they do (services/core/operators.py, audit.py).
--
-- The operator commands (learner find/export/erase, purge, ato and key create/revoke, dlq replay,
-- reconcile --repair, operator create/revoke, audit) run with an operator's token. Only the
-- token's SHA-256 is stored; the token is shown once. A name is never reused, revoked or not, so
-- the trail names one operator for good.
CREATE TABLE operators (
    operator_id uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    token_hash  bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);

-- Every operator action names its operator and its target, in a typed column each: an upload
-- (`upload_id`), an ATO (`ato_id`), a key (`key_id`), and these. Never free text, never a
-- learner's identifier. The gateway's rows (an ATO's own actions) name no operator.
ALTER TABLE audit_events
    ADD COLUMN operator_id uuid REFERENCES operators (operator_id),
    -- The operator created or revoked.
    ADD COLUMN target_operator_id uuid REFERENCES operators (operator_id),
    -- One learner's request (find, export, erase): an id of its own, never the identifier.
    ADD COLUMN learner_request_id uuid,
    ADD COLUMN purge_run_id bigint REFERENCES purge_runs (run_id),
    ADD COLUMN dead_letter_partition integer,
    ADD COLUMN dead_letter_offset bigint,
    DROP CONSTRAINT audit_events_kind_check,
    ADD CONSTRAINT audit_events_kind_check CHECK (kind IN (
        'upload_received', 'upload_withdrawn', 'achievement_withdrawn',
        'error_report_downloaded', 'achievements_listed', 'key_used',
        'learner_found', 'learner_exported', 'learner_erased', 'upload_purged',
        'purge_ran', 'operator_created', 'operator_revoked', 'ato_created', 'key_created',
        'key_revoked', 'dead_letter_replayed', 'claims_repaired')),
    -- The kinds only an operator's command writes never lack their operator or target.
    -- (learner_* and upload_purged rows written before this migration name no operator.)
    ADD CONSTRAINT audit_events_operator_action_named CHECK (CASE kind
        WHEN 'purge_ran' THEN operator_id IS NOT NULL AND purge_run_id IS NOT NULL
        WHEN 'operator_created' THEN operator_id IS NOT NULL AND target_operator_id IS NOT NULL
        WHEN 'operator_revoked' THEN operator_id IS NOT NULL AND target_operator_id IS NOT NULL
        WHEN 'ato_created' THEN operator_id IS NOT NULL AND ato_id IS NOT NULL
        WHEN 'key_created' THEN operator_id IS NOT NULL AND key_id IS NOT NULL
        WHEN 'key_revoked' THEN operator_id IS NOT NULL AND key_id IS NOT NULL
        WHEN 'dead_letter_replayed' THEN operator_id IS NOT NULL
            AND dead_letter_partition IS NOT NULL AND dead_letter_offset IS NOT NULL
        WHEN 'claims_repaired' THEN operator_id IS NOT NULL AND upload_id IS NOT NULL
        ELSE true END);
-- `achievements audit [--since] [--operator]`: the operators' actions in time order.
CREATE INDEX audit_events_operator_actions ON audit_events (occurred_at, operator_id)
    WHERE operator_id IS NOT NULL;
