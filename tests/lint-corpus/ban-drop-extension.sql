-- rule: ban-drop-extension (squawk docs: ban-drop-extension, https://squawkhq.com/docs/ban-drop-extension)
-- Queries using the extension's operators and functions (similarity(), the trigram
-- indexes) break.
DROP EXTENSION pg_trgm;
