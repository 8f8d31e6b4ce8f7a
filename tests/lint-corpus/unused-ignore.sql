-- rule: unused-ignore (squawk docs: cli, "squawk-ignore" comments; squawk reports an unknown rule name in one)
-- A misspelt squawk-ignore: it ignores nothing, the index is still built without
-- CONCURRENTLY, and the typo itself is reported.
-- squawk-ignore require-concurent-index-creation
CREATE INDEX users_last_seen_idx ON users (last_seen_at);
