-- The outbox holds each event as the JSON text it is sent as, and its type beside it. `json`
-- still parsed the 130 MB of an upload's `achievements.accepted` events when its outcome was
-- decided (0.3 s of that transaction, which every upload waits for); the text comes from the
-- event models or the staged parts, both written by this code. The relay reads `event_type`
-- for the Kafka header instead of looking into the payload.
ALTER TABLE outbox ADD COLUMN event_type text;
UPDATE outbox SET event_type = payload->>'event_type';
ALTER TABLE outbox ALTER COLUMN event_type SET NOT NULL;
ALTER TABLE outbox ALTER COLUMN payload TYPE text USING payload::text;
ALTER TABLE outbox ALTER COLUMN payload SET COMPRESSION lz4;
