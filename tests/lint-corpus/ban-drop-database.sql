-- rule: ban-drop-database (squawk docs: ban-drop-database, https://squawkhq.com/docs/ban-drop-database)
-- A whole database gone in a migration (and, in wasmig's transaction, refused anyway).
DROP DATABASE analytics_staging;
