-- rule: renaming-table (squawk docs: renaming-table, https://squawkhq.com/docs/renaming-table)
-- The running application still uses the old name.
ALTER TABLE customers RENAME TO clients;
