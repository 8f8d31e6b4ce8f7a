-- rule: adding-not-nullable-field (squawk docs: adding-not-nullable-field, https://squawkhq.com/docs/adding-not-nullable-field)
-- SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock to check every row
-- (unless a validated CHECK (email IS NOT NULL) constraint proves it first).
ALTER TABLE users ALTER COLUMN email SET NOT NULL;
