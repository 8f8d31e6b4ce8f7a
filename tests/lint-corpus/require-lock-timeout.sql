-- rule: require-lock-timeout (squawk docs: require-lock-timeout, https://squawkhq.com/docs/require-lock-timeout)
-- timeouts: none
-- No lock_timeout (neither in the script nor in wasmig's [timeouts]): while the ALTER waits
-- for its ACCESS EXCLUSIVE lock behind a long query, every other query on users waits too.
SET statement_timeout = '5s';
ALTER TABLE users ADD COLUMN last_seen_at timestamptz;
