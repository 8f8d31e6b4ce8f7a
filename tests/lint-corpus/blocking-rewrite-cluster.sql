-- rule: blocking-rewrite (squawk docs: prefer-repack; the rule applies from PostgreSQL 19 only)
-- CLUSTER rewrites the table in index order under an ACCESS EXCLUSIVE lock. squawk's
-- prefer-repack reports it only for PostgreSQL 19; wasmig's blocking-rewrite for any.
CLUSTER orders USING orders_pkey;
