-- Per-key order through several relays: every outbox row belongs to one of 16 slots by a hash
-- of its Kafka key, and only the relay holding a slot's advisory lock publishes that slot's rows,
-- in id order. Events of one key (one upload, one achievement) are therefore published in the
-- order they were written, however many processes relay.
ALTER TABLE outbox ADD COLUMN slot smallint
    GENERATED ALWAYS AS ((hashtext(key) & 15)::smallint) STORED;
CREATE INDEX outbox_unsent_slot ON outbox (slot, id) WHERE sent_at IS NULL;
DROP INDEX outbox_unsent;
