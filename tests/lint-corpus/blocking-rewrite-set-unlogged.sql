-- rule: blocking-rewrite (PostgreSQL docs: ALTER TABLE ... SET LOGGED / UNLOGGED)
-- SET UNLOGGED rewrites the table under an ACCESS EXCLUSIVE lock (and an unlogged table is
-- emptied by a crash and not replicated).
ALTER TABLE events SET UNLOGGED;
