-- rule: disallowed-unique-constraint (squawk docs: disallowed-unique-constraint, https://squawkhq.com/docs/disallowed-unique-constraint)
-- A UNIQUE constraint builds its index under an ACCESS EXCLUSIVE lock; build the index
-- CONCURRENTLY first and add the constraint USING INDEX.
ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);
