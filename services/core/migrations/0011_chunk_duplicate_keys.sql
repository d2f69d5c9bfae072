-- A chunk's duplicate keys are stored with its task, one value per chunk (an Arrow IPC stream,
-- lz4; `services/validator/duplicate_keys.py`), and DUP_01 across the file is found in memory
-- by the worker that decides the outcome. `row_keys`, a row per key, cost PostgreSQL about a
-- fifth of its work on a big upload: COPYed and indexed per chunk, sorted again by the outcome,
-- deleted after it.
ALTER TABLE validation_chunks ADD COLUMN duplicate_keys bytea;
-- Compressed already: stored out of line as it is, not compressed a second time.
ALTER TABLE validation_chunks ALTER COLUMN duplicate_keys SET STORAGE EXTERNAL;

-- An upload being validated when this runs has chunks done whose keys are in `row_keys`: its
-- chunks are validated again (every chunk's writes go, the counters start over), so that every
-- chunk of it stores its keys the new way. Its Kafka message and status are left as they are.
CREATE TEMP TABLE undecided ON COMMIT DROP AS
    SELECT upload_id FROM uploads
    WHERE status IN ('received', 'validating') AND chunks_total IS NOT NULL;
DELETE FROM achievements WHERE upload_id IN (SELECT upload_id FROM undecided);
DELETE FROM row_issues WHERE upload_id IN (SELECT upload_id FROM undecided);
DELETE FROM accepted_event_parts WHERE upload_id IN (SELECT upload_id FROM undecided);
UPDATE validation_chunks SET state = 'pending', lease_until = NULL, done_at = NULL,
       rows_total = NULL, rows_invalid = NULL, rows_warned = NULL, counts_by_code = NULL,
       file_error_code = NULL, file_error_message = NULL
WHERE upload_id IN (SELECT upload_id FROM undecided);
UPDATE uploads SET chunks_done = 0, rows_processed = 0, issues_stored = 0
WHERE upload_id IN (SELECT upload_id FROM undecided);
DROP TABLE row_keys;
