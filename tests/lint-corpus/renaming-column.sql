-- rule: renaming-column (squawk docs: renaming-column, https://squawkhq.com/docs/renaming-column)
-- The running application still uses the old name.
ALTER TABLE users RENAME COLUMN name TO full_name;
