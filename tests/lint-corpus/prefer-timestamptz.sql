-- rule: prefer-timestamp-tz (squawk docs: prefer-timestamptz, https://squawkhq.com/docs/prefer-timestamptz)
-- timestamp without time zone: the instant depends on the writer's time zone, and changing
-- the type later rewrites the table.
ALTER TABLE orders ADD COLUMN shipped_at timestamp;
