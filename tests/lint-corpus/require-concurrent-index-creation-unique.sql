-- rule: require-concurrent-index-creation (squawk docs: require-concurrent-index-creation, with a UNIQUE expression index)
-- A unique index built without CONCURRENTLY: writes wait for the whole build.
CREATE UNIQUE INDEX users_lower_email_key ON users (lower(email));
