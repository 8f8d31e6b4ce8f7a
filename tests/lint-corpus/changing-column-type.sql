-- rule: changing-column-type (squawk docs: changing-column-type, https://squawkhq.com/docs/changing-column-type)
-- Changing the type rewrites the table and its indexes under an ACCESS EXCLUSIVE lock.
ALTER TABLE payments ALTER COLUMN amount TYPE numeric(14, 2);
