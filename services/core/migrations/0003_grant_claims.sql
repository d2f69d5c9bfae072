-- The grant bridge's work queue: one row per grant-eligible accepted achievement, claimed once.
-- claim_id is uuid5(namespace, achievement_id), so it is also the Idempotency-Key of every send.
CREATE TABLE grant_claims (
    claim_id            uuid PRIMARY KEY,
    achievement_id      uuid NOT NULL UNIQUE REFERENCES achievements (achievement_id),
    upload_id           uuid NOT NULL,
    row_number          integer NOT NULL,
    release_at          timestamptz NOT NULL,       -- copied from achievements when recorded
    -- pending: to send (again); accepted / refused: the grant system's final answer;
    -- withdrawn: the achievement was withdrawn before its release, never sent;
    -- skipped: the achievement was in no state to claim when its turn came, never sent
    state               text NOT NULL DEFAULT 'pending' CHECK (state IN
                        ('pending', 'accepted', 'refused', 'withdrawn', 'skipped')),
    attempts            integer NOT NULL DEFAULT 0,  -- requests that carried this claim
    next_attempt_at     timestamptz NOT NULL,
    -- A bridge that leased the claim owns it until lease_until; its token guards the outcome.
    lease_until         timestamptz,
    lease_token         uuid,
    last_error_code     text,
    grant_amount_pence  integer,
    submitted_at        timestamptz,                 -- first send (claim.submitted)
    closed_at           timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
-- The due-claims scan reads pending rows only, oldest due first.
CREATE INDEX grant_claims_due ON grant_claims (next_attempt_at) WHERE state = 'pending';
CREATE INDEX grant_claims_upload ON grant_claims (upload_id);
