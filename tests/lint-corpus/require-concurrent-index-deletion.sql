-- rule: require-concurrent-index-deletion (squawk docs: require-concurrent-index-deletion, https://squawkhq.com/docs/require-concurrent-index-deletion)
-- DROP INDEX takes an ACCESS EXCLUSIVE lock on the table: reads and writes queue behind it.
DROP INDEX orders_user_id_idx;
