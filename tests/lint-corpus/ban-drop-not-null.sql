-- rule: ban-drop-not-null (squawk docs: ban-drop-not-null, https://squawkhq.com/docs/ban-drop-not-null)
-- Clients that rely on the column never being NULL start reading NULLs.
ALTER TABLE users ALTER COLUMN phone DROP NOT NULL;
