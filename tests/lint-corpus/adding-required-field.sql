-- rule: adding-required-field (squawk docs: adding-required-field, https://squawkhq.com/docs/adding-required-field)
-- NOT NULL without a default: fails on any table with rows, and breaks the running
-- application's inserts that do not know the column yet.
ALTER TABLE users ADD COLUMN email text NOT NULL;
