-- rule: blocking-rewrite (squawk docs: prefer-repack; the rule applies from PostgreSQL 19 only)
-- manifest: transaction = "none"
-- VACUUM FULL rewrites the table under an ACCESS EXCLUSIVE lock: reads and writes wait for
-- the whole rewrite. squawk's prefer-repack reports it only for PostgreSQL 19.
VACUUM FULL orders;
