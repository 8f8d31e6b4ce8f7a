-- rule: adding-field-with-default (squawk docs: adding-field-with-default, https://squawkhq.com/docs/adding-field-with-default)
-- A VOLATILE default: every existing row gets its own value, so PostgreSQL rewrites the
-- table under an ACCESS EXCLUSIVE lock (a constant default is free since PostgreSQL 11).
ALTER TABLE users ADD COLUMN api_key uuid DEFAULT gen_random_uuid();
