-- Downloading the rows to fix of a partially accepted upload (scheme section 9) hands back
-- learners' data exactly as the ATO sent it: the audit trail records each download and who
-- asked (the API key, or the person signed in through the portal), as for the error report.
ALTER TABLE audit_events
    DROP CONSTRAINT audit_events_kind_check,
    ADD CONSTRAINT audit_events_kind_check CHECK (kind IN (
        'upload_received', 'upload_withdrawn', 'achievement_withdrawn',
        'error_report_downloaded', 'achievements_listed', 'key_used',
        'learner_found', 'learner_exported', 'learner_erased', 'upload_purged',
        'purge_ran', 'operator_created', 'operator_revoked', 'ato_created', 'key_created',
        'key_revoked', 'dead_letter_replayed', 'claims_repaired', 'rows_to_fix_downloaded'));
