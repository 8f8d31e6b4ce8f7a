-- rule: require-concurrent-reindex (squawk docs: require-concurrent-reindex, https://squawkhq.com/docs/require-concurrent-reindex)
-- REINDEX without CONCURRENTLY blocks writes (and reads using the index) while it rebuilds.
REINDEX INDEX orders_user_id_idx;
