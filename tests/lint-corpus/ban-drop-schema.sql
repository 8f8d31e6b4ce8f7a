-- rule: ban-drop-schema (squawk docs: ban-drop-schema, https://squawkhq.com/docs/ban-drop-schema)
-- Everything in the schema, and everything depending on it, gone at once.
DROP SCHEMA reporting CASCADE;
