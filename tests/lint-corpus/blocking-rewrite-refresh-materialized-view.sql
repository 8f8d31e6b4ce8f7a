-- rule: blocking-rewrite (PostgreSQL docs: REFRESH MATERIALIZED VIEW, without CONCURRENTLY)
-- A refresh without CONCURRENTLY holds an ACCESS EXCLUSIVE lock on the view while the query
-- runs: every read of the view waits.
REFRESH MATERIALIZED VIEW sales_summary;
