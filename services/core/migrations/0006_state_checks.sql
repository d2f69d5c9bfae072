-- Every state column lists its words (services/core/states.py; a test reads these constraints
-- back and compares them with the enums). `achievements.grant_state` (0001) and
-- `grant_claims.state` (0003) had theirs from the start; `uploads.status` gets one now,
-- including `errored` (scheme section 6).
--
-- Named, so a later migration that adds a word replaces the constraint by this name.
ALTER TABLE uploads ADD CONSTRAINT uploads_status_check CHECK (status IN (
    'received', 'validating', 'rejected', 'failed', 'partially_accepted',
    'passed_with_warnings', 'passed', 'errored'));
