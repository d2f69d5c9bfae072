-- What the validator keeps of a row only until the upload's outcome is decided: the keys the
-- cross-row rules need and, for a valid row, its normalised values, in typed columns. Typed,
-- so the batches are COPYed without JSON encoding and the accepted rows are insert-selected
-- into `achievements` without parsing jsonb; a table of its own, so forgetting them is one
-- DELETE instead of rewriting every row of `row_results`.
--
-- No index and no foreign key: every batch COPYs here, and an index or a per-row foreign-key
-- check would cost more than the few scans of one upload's rows at the end. One payload per
-- row is kept by writing payloads only for the rows `row_results` newly took, in the same
-- transaction. The two columns of `row_results` that held these move here.
CREATE TABLE row_payloads (
    upload_id           uuid NOT NULL,
    row_number          integer NOT NULL,
    duplicate_keys      text[] NOT NULL,        -- 'COURSE|DATE|KIND|ID', only from valid cells
    -- The normalised values of a valid row (all NULL for an invalid one):
    provider_reference  text,
    course_code         text,
    achievement_date    date,
    forename            text,
    surname             text,
    date_of_birth       date,
    uln                 text,
    ni_number           text,
    citb_individual_id  text,
    levy_number         text,
    notes               text,
    grant_eligible      boolean
);

-- An upload being validated while this migration runs keeps what its earlier batches stored.
INSERT INTO row_payloads
SELECT upload_id, row_number, duplicate_keys,
       achievement->>'provider_reference', achievement->>'course_code',
       (achievement->>'achievement_date')::date, achievement->>'forename',
       achievement->>'surname', (achievement->>'date_of_birth')::date, achievement->>'uln',
       achievement->>'ni_number', achievement->>'citb_individual_id',
       achievement->>'levy_number', achievement->>'notes',
       (achievement->>'grant_eligible')::boolean
FROM row_results
WHERE achievement IS NOT NULL OR duplicate_keys <> '{}';
UPDATE row_results SET achievement = NULL, duplicate_keys = '{}'
WHERE achievement IS NOT NULL OR duplicate_keys <> '{}';

ALTER TABLE row_results DROP COLUMN achievement, DROP COLUMN duplicate_keys;
