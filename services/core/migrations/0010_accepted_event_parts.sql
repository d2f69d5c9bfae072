-- The `achievements.accepted` events of an upload, staged chunk by chunk as JSON arrays while
-- it is validated, so deciding the outcome only stamps the release time into them and copies
-- them to the outbox (building a million achievements' JSON in the deciding transaction took
-- seconds). Rows go when the outcome is decided.
CREATE TABLE accepted_event_parts (
    upload_id     uuid NOT NULL,
    chunk_no      integer NOT NULL,
    part          integer NOT NULL,
    first_row     integer NOT NULL,
    last_row      integer NOT NULL,
    achievements  integer NOT NULL,
    elements      text NOT NULL,
    PRIMARY KEY (upload_id, chunk_no, part)
);
-- lz4 rather than the default pglz: these values are large, written once and read once.
ALTER TABLE accepted_event_parts ALTER COLUMN elements SET COMPRESSION lz4;
ALTER TABLE outbox ALTER COLUMN payload SET COMPRESSION lz4;
