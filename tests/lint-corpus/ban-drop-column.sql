-- rule: ban-drop-column (squawk docs: ban-drop-column, https://squawkhq.com/docs/ban-drop-column)
-- The running application still selects the column: its queries fail the moment the
-- migration commits.
ALTER TABLE users DROP COLUMN legacy_password_hash;
