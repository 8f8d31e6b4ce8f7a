-- rule: ban-uncommitted-transaction (squawk docs: ban-uncommitted-transaction, https://squawkhq.com/docs/ban-uncommitted-transaction)
-- A BEGIN that is never committed: whatever follows it is rolled back, or held open.
BEGIN;
ALTER TABLE users ADD COLUMN nickname text;
