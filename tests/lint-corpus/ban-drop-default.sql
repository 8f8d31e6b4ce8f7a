-- rule: ban-drop-default (squawk docs: ban-drop-default, https://squawkhq.com/docs/ban-drop-default)
-- Inserts from the running application that omit the column start failing (NOT NULL) or
-- writing NULLs.
ALTER TABLE orders ALTER COLUMN created_at DROP DEFAULT;
