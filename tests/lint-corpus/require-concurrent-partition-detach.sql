-- rule: require-concurrent-partition-detach (squawk docs: require-concurrent-partition-detach, https://squawkhq.com/docs/require-concurrent-partition-detach)
-- DETACH PARTITION without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on the parent.
ALTER TABLE measurements DETACH PARTITION measurements_2023;
